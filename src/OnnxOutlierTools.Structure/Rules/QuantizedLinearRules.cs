using OnnxOutlierTools.Structure.Patterns;
using OnnxOutlierTools.Structure.Roles;

namespace OnnxOutlierTools.Structure.Rules;

/// <summary>Linears that ONNX Runtime's dynamic quantization (<c>quantize_dynamic</c>) writes:
/// <c>DynamicQuantizeLinear(x) -> MatMulInteger(x_q, W_q, x_zp, w_zp) -> Cast(float) -> Mul(x_scale * w_scale)</c>,
/// rooted at the final Mul. The role's input is the float x, its output the dequantized product, its weight
/// the int8 [in, out] initializer (flagged quantized: folding a scale into it means requantizing).
/// One DynamicQuantizeLinear feeds every linear reading the same x (q/k/v), so inner values may escape.</summary>
public static class QuantizedLinearRules
{
    private static Pattern Dql(int output) => P.Node(["DynamicQuantizeLinear"], [P.Var("x")], bindAs: "dql", output: output);

    public static IReadOnlyList<Rule<LinearRole>> All { get; } =
    [
        new("MatMulInteger",
            P.Commuted("Mul",
                P.MaybeCast(P.Node(["MatMulInteger"], [Dql(0), P.Const("w"), Dql(2)], bindAs: "mmi")),
                P.Commuted("Mul", Dql(1), P.Const("wscale"))),
            m => Check.Require(ConstantResolver.Resolve(m["w"])?.Tensor is { Dims.Count: 2 }, "the weight is not a 2-D matrix", m["w"]),
            m =>
            {
                var dims = ConstantResolver.Resolve(m["w"])!.Tensor.Dims;
                return new LinearRole("MatMulInteger", m.Node("mmi"), m["x"], m.Root, m["w"], WeightLayout.InOut, null, null, true,
                    dims[0], dims[1], []);
            },
            allowEscapes: true),
    ];
}
