using OnnxOutlierTools.Ir;
using OnnxOutlierTools.Structure.Patterns;
using OnnxOutlierTools.Structure.Roles;

namespace OnnxOutlierTools.Structure.Rules;

/// <summary>QK-norm rules, rooted at a norm output on a query or key path (the attention recognizer tries them
/// where its trace from the attention op meets a norm). A norm is found by the norm rules in any form (ai.onnx
/// RMSNormalization, SimplifiedLayerNormalization, decomposed Pow/ReduceMean/Sqrt/Div|Reciprocal/Mul, Gemma's
/// 1 + gamma); these rules say what it reads:
/// <list type="bullet">
/// <item><c>QkNorm/PerHead</c>: a Reshape that splits the projection into heads, [.., H * D] -> [.., H, D]
/// or [.., S * H, D], with a gain of D entries (Qwen3, Gemma 3, Qwen3.5);</item>
/// <item><c>QkNorm/FullWidth</c>: the projection output itself, gain as wide as the projection (OLMo 2).</item>
/// </list>
/// A norm whose Reshape keeps the width, or whose gain does not match the split, is not a QK-norm.</summary>
public static class QkNormRules
{
    /// <param name="normAt">The norm whose output is the value (the norm rules' results).</param>
    /// <param name="linearAt">The linear whose output is exactly the value (no layout op in between).</param>
    public static IReadOnlyList<Rule<QkNormRole>> Create(Func<Value, NormRole?> normAt, Func<Value, LinearRole?> linearAt)
    {
        Pattern Norm(Pattern input) => P.Role("norm", normAt, n => n.Skip is null ? n.Input.Value : null, n => n.Nodes, input, "the output of a norm (not a skip norm)");
        var split = P.MaybeCast(P.Node(["Reshape"], [P.Var("x"), P.Const("shape")], bindAs: "split"));
        var projection = P.Var("x", v => linearAt(v) is not null, "the output of a linear layer");
        return
        [
            new("QkNorm/PerHead", Norm(split), m => CheckPerHead(m, normAt, linearAt), m => BuildPerHead(m, normAt, linearAt)),
            new("QkNorm/FullWidth", Norm(P.MaybeCast(projection)), m => CheckFullWidth(m, normAt, linearAt),
                m => new QkNormRole(normAt(m.Root)!, QkNormScope.FullWidth, null, GainSize(normAt(m.Root)!) ?? 0, linearAt(m["x"])!.OutFeatures)),
        ];
    }

    private static long? GainSize(NormRole norm) =>
        (norm.Gain.ConstValue ?? ConstantResolver.Resolve(norm.Gain)?.Tensor) is { Dims.Count: >= 1 } t ? t.ElementCount : null;

    /// <summary>The last dimension of the tensor before the split: the projection's width, a Reshape's constant
    /// last dimension, or the declared shape.</summary>
    public static long? WidthOf(Value x, Func<Value, LinearRole?> linearAt)
    {
        if (linearAt(x) is { } l) return l.OutFeatures;
        if (x.Producer is { } p && p.Is("Reshape") && p.Input(1) is { } s && ConstantResolver.Resolve(s)?.Tensor is { } shape
            && ShapeOf(shape) is [.., > 0 and var last]) return last;
        return x.Shape is [.., { Value: long d }] && d > 0 ? d : null;
    }

    private static long[]? ShapeOf(Tensors.Tensor t)
    {
        try { return t.DataType == Tensors.TensorDataType.Int64 ? t.AsSpan<long>().ToArray() : null; }
        catch (Exception ex) when (ex is InvalidOperationException or NotSupportedException) { return null; }
    }

    private static Check CheckPerHead(Match m, Func<Value, NormRole?> normAt, Func<Value, LinearRole?> linearAt)
    {
        var norm = normAt(m.Root)!;
        if (GainSize(norm) is not long d || d < 2) return Check.Fail("the norm's gain is not a per-channel vector", norm.Gain);
        if (ConstantResolver.Resolve(m["shape"])?.Tensor is not { } t || ShapeOf(t) is not { Length: >= 2 } shape)
            return Check.Fail("the Reshape's shape is not a constant int64 vector", m["shape"]);
        if (WidthOf(m["x"], linearAt) is not long width)
            return Check.Fail($"cannot tell the width of '{m["x"].Name}' before the Reshape, so not whether it splits heads", m["x"]);
        bool lastIsHead = shape[^1] == d || shape[^1] == -1 && shape[^2] > 0 && shape[^2] * d == width;
        if (!lastIsHead) return Check.Fail($"the Reshape's last dimension ({shape[^1]}) is not the gain's size ({d})", m["shape"]);
        if (width <= d || width % d != 0)
            return Check.Fail($"the Reshape does not split heads: the input width {width} is not a multiple (> 1) of the normalized size {d}", m["x"]);
        return Check.Pass;
    }

    private static QkNormRole BuildPerHead(Match m, Func<Value, NormRole?> normAt, Func<Value, LinearRole?> linearAt)
    {
        var norm = normAt(m.Root)!;
        return new QkNormRole(norm, QkNormScope.PerHead, m.Node("split"), GainSize(norm)!.Value, WidthOf(m["x"], linearAt));
    }

    private static Check CheckFullWidth(Match m, Func<Value, NormRole?> normAt, Func<Value, LinearRole?> linearAt)
    {
        var norm = normAt(m.Root)!;
        var linear = linearAt(m["x"])!;
        return Check.Require(GainSize(norm) == linear.OutFeatures && linear.OutFeatures > 1,
            $"the gain ({GainSize(norm)}) is not as wide as the projection ({linear.OutFeatures})", norm.Gain);
    }
}
