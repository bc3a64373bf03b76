using OnnxOutlierTools.Ir;
using OnnxOutlierTools.Structure.Patterns;
using OnnxOutlierTools.Structure.Roles;

namespace OnnxOutlierTools.Structure.Rules;

/// <summary>What the gated-output rule found after an attention core: the gate's linear, whether the gate is a
/// Split/Slice part of that linear's output (a projection packed with the query), and the nodes.</summary>
public sealed record OutputGateMatch(LinearRole Linear, bool FromPart, Value GateInput, Node Sigmoid, Node Multiply, Value Output);

/// <summary>Gated attention output (Qwen3-Next, Qwen3.5): <c>Mul(attn, Sigmoid(gate))</c> in either operand
/// order, rooted at the Mul, where attn is an attention core's output (through layout ops) and gate is a
/// linear's output (through layout ops) or a Split/Slice part of one (q_proj emitting query and gate).</summary>
public static class GatedAttentionRules
{
    /// <param name="isAttentionOutput">Whether a value is an attention core's output (up to layout ops).</param>
    /// <param name="linearOf">The linear whose output the value is, through layout ops.</param>
    public static IReadOnlyList<Rule<OutputGateMatch>> Create(Func<Value, bool> isAttentionOutput, Func<Value, LinearRole?> linearOf)
    {
        LinearRole? GateLinear(Value gate, out bool part)
        {
            part = false;
            if (linearOf(gate) is { } l) return l;
            part = true;
            return FfnRules.PackedPart(gate) is { } whole ? linearOf(whole) : null;
        }
        var pattern = P.Node(["Mul"],
            [P.Var("attn", isAttentionOutput, "an attention core's output"), P.Node(["Sigmoid"], [P.Var("gate")], bindAs: "sigmoid")],
            bindAs: "mul", commutative: true);
        return
        [
            new("GatedOutput/Sigmoid", pattern,
                m => Check.Require(GateLinear(m["gate"], out _) is not null, $"the gate '{m["gate"].Name}' is not computed by a linear layer (nor a Split/Slice of one)", m["gate"]),
                m =>
                {
                    var linear = GateLinear(m["gate"], out bool part)!;
                    return new OutputGateMatch(linear, part, m["gate"], m.Node("sigmoid"), m.Node("mul"), m.Root);
                }),
        ];
    }
}
