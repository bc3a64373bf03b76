using OnnxOutlierTools.Ir;
using OnnxOutlierTools.Structure.Patterns;
using OnnxOutlierTools.Structure.Roles;

namespace OnnxOutlierTools.Structure.Rules;

/// <summary>Model-level scalars Gemma exports add: the embedding scale (<c>Mul(embedding, sqrt(hidden))</c>) and
/// logit soft-capping (<c>Mul(Tanh(Div(logits, cap)), cap)</c>, or with a Mul by 1/cap inside).</summary>
public static class ScaleAndCapRules
{
    /// <param name="isEmbeddingOutput">Whether a value is the token embedding's output.</param>
    /// <param name="hidden">The embedding width, to tell sqrt(hidden) (builders round it to 2 decimals).</param>
    public static Rule<EmbeddingScaleRole> EmbeddingScale(Func<Value, bool> isEmbeddingOutput, long? hidden) => new(
        "EmbeddingScale",
        P.Node(["Mul"], [P.MaybeCast(P.Var("x", isEmbeddingOutput, "the token embedding's output")), P.AnyScalar("scale")], bindAs: "mul", commutative: true),
        m => Check.Require(ConstantResolver.ScalarOf(m["scale"]) is double s && s > 0 && s != 1, "the scale is not a positive scalar other than 1", m["scale"]),
        m =>
        {
            double s = ConstantResolver.ScalarOf(m["scale"])!.Value;
            bool sqrtHidden = hidden is long h && h > 0 && Math.Abs(s - Math.Sqrt(h)) <= 0.01 * Math.Sqrt(h);
            return new EmbeddingScaleRole(s, m.Node("mul"), m.Root, sqrtHidden);
        },
        allowEscapes: true);

    /// <param name="isLogits">Whether a value is the LM head's output.</param>
    public static Rule<SoftCapRole> LogitSoftcap(Func<Value, bool> isLogits)
    {
        var x = P.Var("x", isLogits, "the LM head's output");
        var inner = P.AnyOf(P.Op("Div", x, P.AnyScalar("cap")), P.Commuted("Mul", x, P.AnyScalar("inverse")));
        return new Rule<SoftCapRole>(
            "LogitSoftcap",
            P.Commuted("Mul", P.Op("Tanh", inner), P.AnyScalar("outer")),
            m => Check.Require(Cap(m) is double c && ConstantResolver.ScalarOf(m["outer"]) is double o && c > 0 && Math.Abs(o - c) <= 1e-3 * c,
                "the outer factor is not the cap the logits were divided by", m["outer"]),
            m => new SoftCapRole(Cap(m)!.Value, m.Nodes, m["x"], m.Root),
            allowEscapes: true);
    }

    private static double? Cap(Match m) =>
        m.Has("cap") ? ConstantResolver.ScalarOf(m["cap"]) : ConstantResolver.ScalarOf(m["inverse"]) is double i && i != 0 ? 1 / i : null;
}
