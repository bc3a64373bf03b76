using OnnxOutlierTools.Ir;
using OnnxOutlierTools.Structure.Patterns;
using OnnxOutlierTools.Structure.Roles;

namespace OnnxOutlierTools.Structure.Rules;

/// <summary>Rules for every normalization form exporters produce: the fused ops (LayerNormalization,
/// SimplifiedLayerNormalization, RMSNormalization, Skip*/EmbedLayerNormalization) and the decomposed
/// LayerNorm and RMSNorm chains with their variants (Div vs Reciprocal+Mul, Pow vs Mul, optional Casts).</summary>
public static class NormRules
{
    private const string Ms = "com.microsoft";

    public static IReadOnlyList<Rule<NormRole>> All { get; } =
    [
        Fused(NormForm.LayerNormalization, "", NormKind.LayerNorm, hasBias: true),
        Fused(NormForm.SimplifiedLayerNormalization, "", NormKind.RmsNorm, hasBias: false),
        Fused(NormForm.RMSNormalization, "", NormKind.RmsNorm, hasBias: false),
        Skip(NormForm.SkipLayerNormalization, NormKind.LayerNorm),
        Skip(NormForm.SkipSimplifiedLayerNormalization, NormKind.RmsNorm),
        EmbedLayerNormalization(),
        DecomposedLayerNorm(),
        DecomposedRmsNorm(),
        .. SandwichNormRules.OnePlusGainNorms,
    ];

    /// <summary>All norms in the matcher's graph, outermost only: a decomposed LayerNorm's inner
    /// (x - mean) / sqrt(mean((x - mean)^2) + eps) * gamma is also an RMSNorm of x - mean.</summary>
    public static List<NormRole> Find(Matcher matcher)
    {
        var norms = matcher.ApplyFirst(All);
        // How many norms hold each node: a norm is inner when another one holds its output node (linear time;
        // comparing every pair was quadratic in the number of norms).
        var holders = new Dictionary<Node, int>();
        foreach (var n in norms)
            foreach (var node in n.Nodes.Distinct())
                holders[node] = holders.GetValueOrDefault(node) + 1;
        norms.RemoveAll(n => holders.GetValueOrDefault(n.OutputNode) - (n.Nodes.Contains(n.OutputNode) ? 1 : 0) > 0);
        return norms;
    }

    /// <summary>LayerNormalization(x, gamma[, beta]) and the RMS variants (opset 17 / ORT / opset 23).</summary>
    private static Rule<NormRole> Fused(NormForm form, string domain, NormKind kind, bool hasBias) => new(
        form.Name(),
        P.Node([form.Name()], [P.Var("x"), P.Const("gain")], domain, bindAs: "norm"),
        m => Check.Require(m.Node("norm").Output(0) == m.Root, "only the normalized output (0) is a norm output"),
        m =>
        {
            var node = m.Node("norm");
            var bias = hasBias && node.Input(2) is { } b && ConstantResolver.Resolve(b) is { } c ? c.Value : null;
            return new NormRole { Kind = kind, Form = form, Nodes = [node], Input = TensorRef.Of(m["x"]), Output = m.Root, Gain = m["gain"],
                Bias = bias, Epsilon = node.GetAttribute("epsilon")?.AsFloat() };
        });

    /// <summary>Skip(Simplified)LayerNormalization(input, skip, gamma[, beta, bias]): s = input + skip (+ bias)
    /// is the residual stream, emitted as output 3 when requested.</summary>
    private static Rule<NormRole> Skip(NormForm form, NormKind kind) => new(
        form.Name(),
        P.Node([form.Name()], [P.Var("input"), P.Var("skip"), P.Const("gain")], Ms, bindAs: "norm"),
        null,
        m =>
        {
            var node = m.Node("norm");
            Value? beta = null;
            if (kind == NormKind.LayerNorm && node.Input(3) is { } b && ConstantResolver.Resolve(b) is { } c) beta = c.Value;
            var sum = node.Output(3) is { } s ? TensorRef.Of(s) : TensorRef.Unemitted(node, 3);
            return new NormRole { Kind = kind, Form = form, Nodes = [node], Input = TensorRef.Of(m["input"]), Skip = m["skip"], Output = m.Root, Gain = m["gain"],
                Bias = beta, Epsilon = node.GetAttribute("epsilon")?.AsFloat(), ResidualSum = sum };
        });

    /// <summary>EmbedLayerNormalization: word + position (+ segment) embeddings, then LayerNorm. Its input is
    /// the embedding sum (output 2).</summary>
    private static Rule<NormRole> EmbedLayerNormalization() => new(
        "EmbedLayerNormalization",
        P.Node(["EmbedLayerNormalization"], [P.Var("ids"), null, P.Const("word"), null, null, P.Const("gain"), P.Const("beta")], Ms, bindAs: "norm"),
        null,
        m =>
        {
            var node = m.Node("norm");
            var sum = node.Output(2) is { } s ? TensorRef.Of(s) : TensorRef.Unemitted(node, 2);
            return new NormRole { Kind = NormKind.LayerNorm, Form = NormForm.EmbedLayerNormalization, Nodes = [node], Input = sum, Output = m.Root, Gain = m["gain"],
                Bias = m["beta"], Epsilon = node.GetAttribute("epsilon")?.AsFloat(), ResidualSum = sum };
        });

    private static Pattern Square(string name) => P.AnyOf(P.Op("Pow", P.Var(name), P.Scalar(2)), P.Op("Mul", P.Var(name), P.Var(name)));

    private static Pattern ReduceMean(Pattern inner) => P.Node(["ReduceMean"], [inner], check: LastAxis, checkText: "ReduceMean over the last axis");

    /// <summary>(x - mean) / sqrt(var + eps) * gamma + beta, as torch.onnx exports it.</summary>
    private static Rule<NormRole> DecomposedLayerNorm()
    {
        // x - mean is usually one node shared by the variance and the numerator; some exports compute it twice.
        var mean = P.Bind("mean", ReduceMean(P.Var("x")));
        var centered = P.AnyOf(P.Bind("d", P.Op("Sub", P.Var("x"), mean)), P.Op("Sub", P.Var("x"), mean));
        var square = P.AnyOf(P.Op("Pow", P.MaybeCast(centered), P.Scalar(2)), P.Op("Mul", centered, centered));
        var variance = P.Commuted("Add", ReduceMean(P.MaybeCast(square)), P.AnyScalar("eps"));
        var std = SqrtLike(variance);
        var normalized = P.AnyOf(P.Op("Div", centered, std), P.Commuted("Mul", centered, P.Op("Reciprocal", std)),
            P.Commuted("Mul", centered, P.Op("Pow", variance, P.Scalar(-0.5))));
        var scaled = P.Commuted("Mul", P.MaybeCast(normalized), P.Const("gain"));
        return new Rule<NormRole>(
            "DecomposedLayerNorm",
            P.Commuted("Add", scaled, P.Const("beta")),
            m => CheckGain(m),
            m => new NormRole { Kind = NormKind.LayerNorm, Form = NormForm.DecomposedLayerNorm, Nodes = m.Nodes, Input = TensorRef.Of(m["x"]), Output = m.Root, Gain = m["gain"],
                Bias = m["beta"], Epsilon = ConstantResolver.ScalarOf(m["eps"]) });
    }

    private static Pattern SqrtLike(Pattern inner) => P.AnyOf(P.Op("Sqrt", inner), P.Op("Pow", inner, P.Scalar(0.5)));

    /// <summary>x / sqrt(mean(x^2) + eps) * gamma: Div, Reciprocal+Mul, Div(1, .)+Mul or an rsqrt-like
    /// Pow(., -0.5)+Mul, with Sqrt or Pow(., 0.5), and the float->float Casts HF exports put around it.</summary>
    private static Rule<NormRole> DecomposedRmsNorm()
    {
        var meanSquare = P.Commuted("Add", ReduceMean(Square("x")), P.AnyScalar("eps"));
        var rms = SqrtLike(meanSquare);
        var normalized = P.AnyOf(
            P.Op("Div", P.Var("x"), rms),
            P.Commuted("Mul", P.Var("x"), P.Op("Reciprocal", rms)),
            P.Commuted("Mul", P.Var("x"), P.Op("Div", P.Scalar(1), rms)),
            P.Commuted("Mul", P.Var("x"), P.Op("Pow", meanSquare, P.Scalar(-0.5))));
        return new Rule<NormRole>(
            "DecomposedRmsNorm",
            P.Commuted("Mul", P.MaybeCast(normalized), P.Const("gain")),
            m => IsCentered(m["x"]) ? Check.Fail("x is x' - mean(x'): this is the inside of a LayerNorm", m["x"]) : CheckGain(m),
            m => new NormRole { Kind = NormKind.RmsNorm, Form = NormForm.DecomposedRmsNorm, Nodes = m.Nodes, Input = TensorRef.Of(m["x"]), Output = m.Root, Gain = m["gain"],
                Epsilon = ConstantResolver.ScalarOf(m["eps"]) });
    }

    private static bool IsCentered(Value x) =>
        GraphWalk.Upstream(x).Producer is { } sub && sub.Is("Sub") && sub.Input(1)?.Producer is { } mean && mean.Is("ReduceMean")
        && GraphWalk.SameTensor(mean.Input(0), sub.Input(0));

    /// <summary>A gain is a per-channel vector (a scalar multiply is not a norm gain).</summary>
    private static Check CheckGain(Match m)
    {
        var gain = m["gain"].ConstValue ?? ConstantResolver.Resolve(m["gain"])?.Tensor;
        return Check.Require(gain is not null && gain.Dims.Count >= 1 && gain.ElementCount > 1, "the gain is not a per-channel vector", m["gain"]);
    }

    private static bool LastAxis(Node node)
    {
        if (node.GetAttribute("axes") is { } axes) return axes.AsInts() is [-1] || axes.AsInts().Count == 1;
        // Opset 18+: axes is an input.
        return node.Input(1) is { } a && ConstantResolver.Resolve(a)?.Tensor is { ElementCount: 1 };
    }
}
