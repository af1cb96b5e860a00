// Cross-node journeys: one packet's journeys on several nodes, joined.
//
// A traced packet leaves a pod on one node and shows up in a pod on another;
// each node's summary has one journey of it (journey_json). stitch_journeys
// joins them by the packet's identity (pwru_part_ident, read by the BPF
// programs from the headers with the tuple) and by time. Pure: no kernel, no
// clock, no I/O.
//
// The rule. Journey B (on node Y) continues journey A (on node X) when:
//   1. X != Y, and A ended by leaving its pod: fate "transmitted" (its last
//      live hook a transmit: net_dev_queue, *xmit*), or "in_flight" with a
//      transmit as its last listed hook.
//   2. Both have an "ident", the same IP version and transport protocol, and
//      the identities match:
//        - TCP: the same seq, ack and tcp_flags; or the same ack and B's seq
//          inside A's data, [A.seq, A.seq + A.len) modulo 2^32 (GSO split
//          on the way, or GRO merged B, which starts at A's seq).
//        - IPv4, not TCP: the same IP ID, len and seq (ICMP echo:
//          identifier << 16 | sequence; 0 otherwise).
//        - IPv6, not TCP: the same flow label, len and seq.
//   3. B's first_wall_ns is in [A.last_wall_ns - kStitchSkewAllowNs,
//      A.last_wall_ns + kStitchMaxTransitNs] (clock skew between nodes,
//      time in flight).
//   4. B does not go back to A's source (B's daddr is not A's saddr): a
//      reply is never the packet, even when an ICMP echo reply repeats the
//      request's identifier and sequence.
// The tuple is NAT-tolerant: the same source address and port (A was
// DNAT'ed, as kube-proxy does from a ClusterIP to a pod) or the same
// destination address and port (A was SNAT'ed) gives "stitched_by":
// "ident+tuple"; a link with both changed stands on identity and time alone,
// "ident+time" (any such link in a chain makes the chain's).
//
// Forwarding. A packet forwarded through a traced pod (A on X, B on Y, C on
// Z) left a pod on two nodes with one identity, so A and B are candidates of
// each other within the skew allowance, and both are C's. The wall clocks
// give each such pair its direction (the earlier first_wall_ns continues
// into the later), and C drops A as a candidate because B, also one,
// already continues A.
//
// Choice. B with one candidate A takes it. With several, the ones whose tuple
// matches are preferred; of the rest, the one closest in time (|B.first -
// A.last|) if it is closer than every other by more than kStitchTieNs, else
// B is counted in `ambiguous` and not stitched: a guess would show a wrong
// path as fact. So is a B with more than kStitchMaxCandidates candidates
// (not TCP: or more than 4 times that many before rule 4): its identity is
// too common in its window to choose by time, and trying would cost the
// square of their number. An A taken by several Bs keeps them all only
// when they are the pieces of a TCP split (each B at its own seq inside A's
// data); otherwise those Bs are ambiguous too. Chains follow these links up to
// kStitchMaxSegments journeys; what a longer chain leaves out before its
// first segment passes through on its own.
//
// Output. A chain becomes {"nodes": [node per segment], "segments": [{"node",
// "namespace", "pod", "journey": {the node's journey without those three}}],
// "fate", "where", "reason"?, "hint"?, "node": the last segment's (where the
// fate happened), "stitched_by"}. Every other journey passes through
// unchanged (with "node").
//
// Limits.
//   - The IPv4 ID is 16 bits: it wraps (every 65536 packets of a socket),
//     Linux sets it to 0 on some DF packets without a socket, and it counts
//     per socket for TCP. The time window and the length narrow it down.
//   - The IPv6 flow label names a flow, not a packet (and is 0 where the
//     sender does not set one): IPv6 UDP and ICMPv6 are stitched only when
//     their length and echo numbers make them unique in the window.
//   - Anything that rewrites the inner headers breaks the identity: a TCP
//     proxy or terminator, a SYN proxy, IPVS or load balancers that
//     re-segment, tunnels that fragment, BIG TCP (len 0 defeats the range
//     match; the exact match still works).
//   - Retransmissions share seq and ack: both attempts match, and are told
//     apart only by time (above); a retransmission within kStitchTieNs of
//     the first is ambiguous.
//   - GRO: the merged B continues only the A it starts with; the other As
//     it absorbed stay single-node journeys.
//   - Forwarding through pods on nodes whose clocks are further apart than
//     the hops: the direction of a pair comes from those clocks, and can be
//     wrong; a two-node journey (no pod forwards) does not depend on it.
//   - Journeys the coordinator could not keep (its memory budget) are not
//     stitched; their partners pass through alone.
#pragma once

#include <cstddef>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace pwru {

inline constexpr std::uint64_t kStitchMaxTransitNs = 1'000'000'000;
inline constexpr std::uint64_t kStitchSkewAllowNs = 500'000'000;
inline constexpr std::uint64_t kStitchTieNs = 1'000'000;
inline constexpr std::size_t kStitchMaxSegments = 4;
inline constexpr std::size_t kStitchMaxCandidates = 32;

// journey_json's object with "node", "namespace", "pod", "first_wall_ns" and
// "last_wall_ns", as a node's merged trace carries it.
struct NodeJourney {
  std::string node;
  nlohmann::json journey;
};

struct StitchResult {
  nlohmann::json journeys = nlohmann::json::array();  // stitched chains and the rest, in input order
  std::uint64_t stitched = 0;                         // chains of two or more segments
  std::uint64_t ambiguous = 0;                        // journeys with several candidates and no choice
};

StitchResult stitch_journeys(std::vector<NodeJourney> in);

}  // namespace pwru
