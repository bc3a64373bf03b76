using OnnxOutlierTools.Ir;
using OnnxOutlierTools.Structure.Patterns;
using OnnxOutlierTools.Structure.Roles;

namespace OnnxOutlierTools.Structure.Rules;

/// <summary>Gemma 2/3 norms. Sandwich blocks normalize each sublayer's output before its residual add
/// (post_attention_layernorm, post_feedforward_layernorm) besides the usual pre-norms; Gemma's RMSNorm
/// multiplies by <c>1 + gamma</c>: builders either pre-add the 1 into the initializer (onnxruntime-genai's
/// add_offset: a plain norm here) or leave an explicit <c>Add(gamma, 1)</c>, recognized by
/// <see cref="OnePlusGainNorms"/> with <see cref="NormGainForm.OnePlusGain"/>.</summary>
public static class SandwichNormRules
{
    /// <summary>A norm (not a skip norm) that reads a sublayer's output (o_proj, down_proj), rooted at the norm
    /// output; the block assembler then looks for the residual join after it.</summary>
    public static Rule<NormRole> PostSublayer(Func<Value, NormRole?> normAt, Func<Value, bool> isSublayerOutput) => new(
        "SandwichNorm/PostSublayer",
        P.Role("norm", normAt, n => n.Input.Value, n => n.Nodes, P.Var("y", isSublayerOutput, "a sublayer's output (o_proj / down_proj)"), "the output of a norm"),
        m => Check.Require(normAt(m.Root)!.Skip is null, "a skip norm is itself the residual join, not a norm on the sublayer output", m.Root),
        m => normAt(m.Root)!,
        allowEscapes: true);

    private static Pattern OnePlus => P.Commuted("Add", P.Const("gain"), P.Scalar(1));

    /// <summary>RMSNorm forms whose gain input is <c>Add(gamma, 1)</c>: the fused ops and the decomposed chain.</summary>
    public static IReadOnlyList<Rule<NormRole>> OnePlusGainNorms { get; } =
    [
        Fused(NormForm.SimplifiedLayerNormalization),
        Fused(NormForm.RMSNormalization),
        Decomposed(),
    ];

    private static Rule<NormRole> Fused(NormForm form) => new(
        $"{form.Name()}(1+gain)",
        P.Node([form.Name()], [P.Var("x"), OnePlus], bindAs: "norm"),
        m => Check.Require(m.Node("norm").Output(0) == m.Root, "only the normalized output (0) is a norm output"),
        m => new NormRole { Kind = NormKind.RmsNorm, Form = form, Nodes = m.Nodes, Input = TensorRef.Of(m["x"]), Output = m.Root, Gain = m["gain"],
            Epsilon = m.Node("norm").GetAttribute("epsilon")?.AsFloat(), GainForm = NormGainForm.OnePlusGain });

    /// <summary>x * rsqrt(mean(x^2) + eps) * (1 + gamma), with the variants torch exports (Div, Reciprocal, Pow -0.5).</summary>
    private static Rule<NormRole> Decomposed()
    {
        var square = P.AnyOf(P.Op("Pow", P.Var("x"), P.Scalar(2)), P.Op("Mul", P.Var("x"), P.Var("x")));
        var meanSquare = P.Commuted("Add", P.Node(["ReduceMean"], [P.MaybeCast(square)]), P.AnyScalar("eps"));
        var rms = P.AnyOf(P.Op("Sqrt", meanSquare), P.Op("Pow", meanSquare, P.Scalar(0.5)));
        var normalized = P.AnyOf(
            P.Op("Div", P.Var("x"), rms),
            P.Commuted("Mul", P.Var("x"), P.Op("Reciprocal", rms)),
            P.Commuted("Mul", P.Var("x"), P.Op("Div", P.Scalar(1), rms)),
            P.Commuted("Mul", P.Var("x"), P.Op("Pow", meanSquare, P.Scalar(-0.5))));
        return new Rule<NormRole>(
            "DecomposedRmsNorm(1+gain)",
            P.Commuted("Mul", P.MaybeCast(normalized), OnePlus),
            m => Check.Require((m["gain"].ConstValue ?? ConstantResolver.Resolve(m["gain"])?.Tensor) is { Dims.Count: >= 1, ElementCount: > 1 },
                "the gain is not a per-channel vector", m["gain"]),
            m => new NormRole { Kind = NormKind.RmsNorm, Form = NormForm.DecomposedRmsNorm, Nodes = m.Nodes, Input = TensorRef.Of(m["x"]), Output = m.Root, Gain = m["gain"],
                Epsilon = ConstantResolver.ScalarOf(m["eps"]), GainForm = NormGainForm.OnePlusGain });
    }
}
