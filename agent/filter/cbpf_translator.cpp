#include "filter/cbpf_translator.h"

#include <linux/filter.h>

#include <cerrno>
#include <cstdint>
#include <string>

#include "common/error.h"

namespace pwru {

namespace {

// Register plan. r0-r5 are scratch (helper calls clobber them), r6-r9 keep
// the filter's state across bpf_probe_read_kernel() calls.
constexpr int kA = BPF_REG_6;
constexpr int kX = BPF_REG_7;
constexpr int kData = BPF_REG_8;
constexpr int kLen = BPF_REG_9;  // data_end - data: packet bytes readable

// Stack: M[i] at fp - 4 * (i + 1); an 8-byte landing slot for loads below.
constexpr int kMemWords = BPF_MEMWORDS;  // 16
constexpr int kLoadSlot = -(4 * kMemWords + 8);

constexpr std::int32_t kHelperProbeReadKernel = BPF_FUNC_probe_read_kernel;

bpf_insn make(std::uint8_t code, int dst, int src, std::int16_t off, std::int32_t imm) {
  bpf_insn in{};
  in.code = code;
  in.dst_reg = static_cast<std::uint8_t>(dst);
  in.src_reg = static_cast<std::uint8_t>(src);
  in.off = off;
  in.imm = imm;
  return in;
}

// Jump targets are resolved after every cBPF instruction has a position.
enum class Target { kInsn, kFail, kEnd };
struct Fixup {
  std::size_t at;  // index of the jump in the output
  Target target;
  std::size_t cbpf_index;
};

class Translator {
 public:
  Translator(const CbpfProgram& program, StubInputs inputs) : program_(program), inputs_(inputs) {}

  std::vector<bpf_insn> run() {
    if (program_.empty()) throw SystemError("empty cBPF program", EINVAL);
    mark_reachable();
    prologue();
    starts_.assign(program_.size(), 0);
    for (std::size_t i = 0; i < program_.size(); ++i) {
      starts_[i] = out_.size();
      if (reachable_[i]) emit(i);
    }
    fail_ = out_.size();
    // Every way of rejecting: a load out of bounds, a failed read, x / 0.
    out_.push_back(make(BPF_ALU64 | BPF_MOV | BPF_K, BPF_REG_0, 0, 0, 0));
    end_ = out_.size();
    resolve();
    return std::move(out_);
  }

 private:
  [[noreturn]] void unsupported(std::size_t i) const {
    throw SystemError(
        "cBPF instruction " + std::to_string(i) + " (code 0x" + to_hex(program_[i].code) + ") cannot be translated",
        ENOTSUP);
  }
  static std::string to_hex(unsigned v) {
    static const char* digits = "0123456789abcdef";
    std::string s;
    do {
      s.insert(s.begin(), digits[v & 0xf]);
      v >>= 4;
    } while (v);
    return s;
  }

  // cBPF only jumps forward, so one pass in order finds everything that can run.
  void mark_reachable() {
    reachable_.assign(program_.size(), false);
    reachable_[0] = true;
    for (std::size_t i = 0; i < program_.size(); ++i) {
      if (!reachable_[i]) continue;
      const CbpfInsn& in = program_[i];
      auto reach = [&](std::size_t target) {
        if (target >= program_.size()) throw SystemError("cBPF jump past the end at " + std::to_string(i), EINVAL);
        reachable_[target] = true;
      };
      switch (BPF_CLASS(in.code)) {
        case BPF_RET:
          break;
        case BPF_JMP:
          if (BPF_OP(in.code) == BPF_JA) {
            // libpcap emits loops only for `protochain`; the kernel's own
            // classic BPF refuses them too.
            if (in.k >= 0x80000000u)
              throw UsageError(
                  "the expression needs a backward jump (a loop, as `protochain` does), which "
                  "cannot run in a tracing program; use `ip proto N` or `ip6 proto N` instead");
            reach(i + 1 + in.k);
          } else {
            reach(i + 1 + in.jt);
            reach(i + 1 + in.jf);
          }
          break;
        default:
          reach(i + 1);
      }
    }
  }

  void push(bpf_insn in) { out_.push_back(in); }
  void jump(std::uint8_t code, int dst, int src, std::int32_t imm, Target target, std::size_t cbpf_index = 0) {
    fixups_.push_back(Fixup{out_.size(), target, cbpf_index});
    push(make(code, dst, src, 0, imm));
  }
  void mov32_imm(int dst, std::int32_t imm) { push(make(BPF_ALU | BPF_MOV | BPF_K, dst, 0, 0, imm)); }
  void mov32_reg(int dst, int src) { push(make(BPF_ALU | BPF_MOV | BPF_X, dst, src, 0, 0)); }
  void mov64_reg(int dst, int src) { push(make(BPF_ALU64 | BPF_MOV | BPF_X, dst, src, 0, 0)); }

  void prologue() {
    // The inputs may sit in any of r1-r5; copy them out before anything
    // clobbers them. kData/kLen are not among the possible input registers.
    mov64_reg(kData, inputs_.data_reg);
    mov64_reg(kLen, inputs_.data_end_reg);
    push(make(BPF_ALU64 | BPF_SUB | BPF_X, kLen, kData, 0, 0));
    jump(BPF_JMP | BPF_JSLT | BPF_K, kLen, 0, 0, Target::kFail);
    mov32_imm(kA, 0);
    mov32_imm(kX, 0);
    for (int i = 0; i < kMemWords; ++i) push(make(BPF_ST | BPF_MEM | BPF_W, BPF_REG_10, 0, mem_off(i), 0));
  }

  static std::int16_t mem_off(std::uint32_t k) { return static_cast<std::int16_t>(-4 * (static_cast<int>(k) + 1)); }

  // dst = big-endian `size` bytes at data + offset_reg (or + k when
  // offset_reg < 0); out of bounds or a failed read rejects.
  void packet_load(int dst, int size, int offset_reg, std::uint32_t k) {
    if (offset_reg < 0) {
      if (k > 0x7fffffffu - 4) {  // beyond any skb: always out of bounds
        jump(BPF_JMP | BPF_JA, 0, 0, 0, Target::kFail);
        return;
      }
      // if len < k + size: reject
      jump(BPF_JMP | BPF_JLT | BPF_K, kLen, 0, static_cast<std::int32_t>(k + size), Target::kFail);
      mov64_reg(BPF_REG_3, kData);
      push(make(BPF_ALU64 | BPF_ADD | BPF_K, BPF_REG_3, 0, 0, static_cast<std::int32_t>(k)));
    } else {
      // offset = (u32)(X + k), as cBPF computes it
      mov32_reg(BPF_REG_2, offset_reg);
      push(make(BPF_ALU | BPF_ADD | BPF_K, BPF_REG_2, 0, 0, static_cast<std::int32_t>(k)));
      mov64_reg(BPF_REG_1, BPF_REG_2);
      push(make(BPF_ALU64 | BPF_ADD | BPF_K, BPF_REG_1, 0, 0, size));
      jump(BPF_JMP | BPF_JGT | BPF_X, BPF_REG_1, kLen, 0, Target::kFail);
      mov64_reg(BPF_REG_3, kData);
      push(make(BPF_ALU64 | BPF_ADD | BPF_X, BPF_REG_3, BPF_REG_2, 0, 0));
    }
    mov64_reg(BPF_REG_1, BPF_REG_10);
    push(make(BPF_ALU64 | BPF_ADD | BPF_K, BPF_REG_1, 0, 0, kLoadSlot));
    push(make(BPF_ALU64 | BPF_MOV | BPF_K, BPF_REG_2, 0, 0, size));
    push(make(BPF_JMP | BPF_CALL, 0, 0, 0, kHelperProbeReadKernel));
    jump(BPF_JMP | BPF_JNE | BPF_K, BPF_REG_0, 0, 0, Target::kFail);
    const std::uint8_t width = size == 4 ? BPF_W : size == 2 ? BPF_H : BPF_B;
    push(make(BPF_LDX | BPF_MEM | width, dst, BPF_REG_10, kLoadSlot, 0));
    if (size > 1) push(make(BPF_ALU | BPF_END | BPF_TO_BE, dst, 0, 0, size * 8));
  }

  void emit(std::size_t i) {
    const CbpfInsn& in = program_[i];
    const std::int32_t k = static_cast<std::int32_t>(in.k);
    switch (BPF_CLASS(in.code)) {
      case BPF_LD:
      case BPF_LDX: {
        const int dst = BPF_CLASS(in.code) == BPF_LD ? kA : kX;
        const int size = BPF_SIZE(in.code) == BPF_W ? 4 : BPF_SIZE(in.code) == BPF_H ? 2 : 1;
        switch (BPF_MODE(in.code)) {
          case BPF_IMM:
            mov32_imm(dst, k);
            return;
          case BPF_LEN:
            mov32_reg(dst, kLen);
            return;
          case BPF_MEM:
            if (in.k >= static_cast<std::uint32_t>(kMemWords)) unsupported(i);
            push(make(BPF_LDX | BPF_MEM | BPF_W, dst, BPF_REG_10, mem_off(in.k), 0));
            return;
          case BPF_ABS:
            if (dst != kA) unsupported(i);
            packet_load(kA, size, -1, in.k);
            return;
          case BPF_IND:
            if (dst != kA) unsupported(i);
            packet_load(kA, size, kX, in.k);
            return;
          case BPF_MSH:  // X = 4 * (P[k] & 0xf): the IPv4 header length
            if (dst != kX) unsupported(i);
            packet_load(kX, 1, -1, in.k);
            push(make(BPF_ALU | BPF_AND | BPF_K, kX, 0, 0, 0xf));
            push(make(BPF_ALU | BPF_LSH | BPF_K, kX, 0, 0, 2));
            return;
        }
        unsupported(i);
      }
      case BPF_ST:
      case BPF_STX:
        if (in.k >= static_cast<std::uint32_t>(kMemWords)) unsupported(i);
        push(make(BPF_STX | BPF_MEM | BPF_W, BPF_REG_10, BPF_CLASS(in.code) == BPF_ST ? kA : kX, mem_off(in.k), 0));
        return;
      case BPF_ALU:
        emit_alu(i);
        return;
      case BPF_JMP:
        emit_jmp(i);
        return;
      case BPF_RET:
        if (BPF_RVAL(in.code) == BPF_K) {
          push(make(BPF_ALU64 | BPF_MOV | BPF_K, BPF_REG_0, 0, 0, in.k != 0 ? 1 : 0));
        } else if (BPF_RVAL(in.code) == BPF_A) {
          mov32_reg(BPF_REG_0, kA);
        } else {
          unsupported(i);
        }
        jump(BPF_JMP | BPF_JA, 0, 0, 0, Target::kEnd);
        return;
      case BPF_MISC:
        if (BPF_MISCOP(in.code) == BPF_TAX)
          mov32_reg(kX, kA);
        else if (BPF_MISCOP(in.code) == BPF_TXA)
          mov32_reg(kA, kX);
        else
          unsupported(i);
        return;
    }
    unsupported(i);
  }

  void emit_alu(std::size_t i) {
    const CbpfInsn& in = program_[i];
    const std::uint8_t op = BPF_OP(in.code);
    const bool by_x = BPF_SRC(in.code) == BPF_X;
    switch (op) {
      case BPF_ADD:
      case BPF_SUB:
      case BPF_MUL:
      case BPF_OR:
      case BPF_AND:
      case BPF_XOR:
        break;
      case BPF_DIV:
      case BPF_MOD:
        if (by_x) {
          jump(BPF_JMP | BPF_JEQ | BPF_K, kX, 0, 0, Target::kFail);
        } else if (in.k == 0) {
          jump(BPF_JMP | BPF_JA, 0, 0, 0, Target::kFail);
          return;
        }
        break;
      case BPF_LSH:
      case BPF_RSH:
        // C leaves shifts by >= 32 undefined; libpcap's interpreter gives 0.
        if (by_x) {
          mov32_imm(BPF_REG_1, 0);
          push(make(BPF_JMP | BPF_JGE | BPF_K, kX, 0, 2, 32));  // skip the shift, A = 0
          push(make(BPF_ALU | op | BPF_X, kA, kX, 0, 0));
          push(make(BPF_JMP | BPF_JA, 0, 0, 1, 0));
          mov32_imm(kA, 0);
          return;
        }
        if (in.k >= 32) {
          mov32_imm(kA, 0);
          return;
        }
        break;
      case BPF_NEG:
        push(make(BPF_ALU | BPF_NEG, kA, 0, 0, 0));
        return;
      default:
        unsupported(i);
    }
    if (by_x)
      push(make(BPF_ALU | op | BPF_X, kA, kX, 0, 0));
    else
      push(make(BPF_ALU | op | BPF_K, kA, 0, 0, static_cast<std::int32_t>(in.k)));
  }

  void emit_jmp(std::size_t i) {
    const CbpfInsn& in = program_[i];
    const std::uint8_t op = BPF_OP(in.code);
    if (op == BPF_JA) {
      jump(BPF_JMP | BPF_JA, 0, 0, 0, Target::kInsn, i + 1 + in.k);
      return;
    }
    if (op != BPF_JEQ && op != BPF_JGT && op != BPF_JGE && op != BPF_JSET) unsupported(i);
    // JMP32 compares the low 32 bits as unsigned, exactly cBPF's A op k;
    // a 64-bit compare would sign-extend k.
    const bool by_x = BPF_SRC(in.code) == BPF_X;
    const std::uint8_t code = BPF_JMP32 | op | (by_x ? BPF_X : BPF_K);
    jump(code, kA, by_x ? kX : 0, static_cast<std::int32_t>(in.k), Target::kInsn, i + 1 + in.jt);
    if (in.jf != 0) jump(BPF_JMP | BPF_JA, 0, 0, 0, Target::kInsn, i + 1 + in.jf);
  }

  void resolve() {
    for (const Fixup& f : fixups_) {
      std::size_t target = 0;
      switch (f.target) {
        case Target::kInsn:
          target = starts_.at(f.cbpf_index);
          break;
        case Target::kFail:
          target = fail_;
          break;
        case Target::kEnd:
          target = end_;
          break;
      }
      const long offset = static_cast<long>(target) - static_cast<long>(f.at) - 1;
      if (offset < -32768 || offset > 32767) throw SystemError("translated pcap filter is too large", E2BIG);
      out_[f.at].off = static_cast<std::int16_t>(offset);
    }
  }

  const CbpfProgram& program_;
  StubInputs inputs_;
  std::vector<bool> reachable_;
  std::vector<std::size_t> starts_;
  std::vector<bpf_insn> out_;
  std::vector<Fixup> fixups_;
  std::size_t fail_ = 0, end_ = 0;
};

}  // namespace

std::vector<struct bpf_insn> translate_cbpf(const CbpfProgram& program, StubInputs inputs) {
  return Translator(program, inputs).run();
}

std::size_t translated_insn_count(const CbpfProgram& program) {
  // Input registers change moves, never the count.
  return translate_cbpf(program, StubInputs{BPF_REG_1, BPF_REG_2}).size();
}

}  // namespace pwru
