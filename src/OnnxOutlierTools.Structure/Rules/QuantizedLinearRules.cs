using OnnxOutlierTools.Ir;
using OnnxOutlierTools.Structure.Patterns;
using OnnxOutlierTools.Structure.Roles;

namespace OnnxOutlierTools.Structure.Rules;

/// <summary>Linears after ORT's dynamic quantization (<c>onnxruntime.quantization.quantize_dynamic</c>): the activation is
/// quantized at run time by DynamicQuantizeLinear, multiplied by an int8/uint8 [in, out] weight, and rescaled.
/// The unfused form is Mul(Cast(MatMulInteger(x_q, W_q, x_zp, W_zp)), Mul(x_scale, W_scale)), rooted at the final Mul
/// (the Cast to float may be absent); the fused forms are com.microsoft MatMulIntegerToFloat (after
/// DynamicQuantizeLinear) and DynamicQuantizeMatMul (float input). The role's input is the float activation before
/// quantization, so norms and probes relate to it as to any linear; its weight is the int8 initializer (flagged
/// quantized: folding a scale into it means requantizing). One rule per form: each MatMulInteger-family node is
/// matched by exactly one of them.</summary>
public static class QuantizedLinearRules
{
    private const string Ms = "com.microsoft";

    // The quantizer's outputs are leaves, not part of the match: one DynamicQuantizeLinear feeds every linear that reads
    // the same activation (q/k/v, gate/up), and a match may not own values used outside it.
    private static Pattern Quantized(int output) => P.Var($"dq{output}", v => v.Producer is { } p && p.Is("DynamicQuantizeLinear") && v.OutputIndex == output,
        $"output {output} of a DynamicQuantizeLinear");

    public static IReadOnlyList<Rule<LinearRole>> All { get; } =
    [
        new("MatMulInteger+DynamicQuantizeLinear",
            P.Commuted("Mul",
                P.MaybeCast(P.Node(["MatMulInteger"], [Quantized(0), P.Const("w"), null, null], bindAs: "mmi")),
                P.Commuted("Mul", Quantized(1), P.Const("wscale"))),
            m => SameQuantizer(m), m => Build(m, LinearForm.MatMulInteger)),
        new("MatMulIntegerToFloat",
            P.Node(["MatMulIntegerToFloat"], [Quantized(0), P.Const("w")], Ms, bindAs: "mmi"),
            m => Weight2D(m), m => Build(m, LinearForm.MatMulIntegerToFloat)),
        new("DynamicQuantizeMatMul",
            P.Node(["DynamicQuantizeMatMul"], [P.Var("dq0"), P.Const("w")], Ms, bindAs: "mmi"),
            m => Weight2D(m), m => Build(m, LinearForm.DynamicQuantizeMatMul)),
    ];

    /// <summary>The activation scale and (when given) the activation zero point come from the quantizer of the
    /// MatMulInteger input: otherwise the product is not dequantized with the activation's own parameters.</summary>
    private static Check SameQuantizer(Match m)
    {
        var w = Weight2D(m);
        if (!w.Ok) return w;
        var quantizer = m["dq0"].Producer;
        if (m["dq1"].Producer != quantizer)
            return Check.Fail("the activation scale comes from the quantizer of the MatMulInteger input", m["dq1"]);
        return m.Node("mmi").Input(2) is { } zeroPoint
            ? Check.Require(zeroPoint.Producer == quantizer && zeroPoint.OutputIndex == 2, "the activation zero point comes from the quantizer of the MatMulInteger input", zeroPoint)
            : Check.Pass;
    }

    private static Check Weight2D(Match m) =>
        Check.Require(ConstantResolver.Resolve(m["w"])?.Tensor is { Dims.Count: 2 }, "the quantized weight is not a 2-D matrix", m["w"]);

    private static LinearRole Build(Match m, LinearForm form)
    {
        var node = m.Node("mmi");
        var dims = ConstantResolver.Resolve(m["w"])!.Tensor.Dims;
        var bias = form != LinearForm.MatMulInteger && node.Input(form == LinearForm.MatMulIntegerToFloat ? 6 : 4) is { } c && ConstantResolver.Resolve(c) is { } b ? b.Value : null;
        // The float activation: the quantizer's input (DynamicQuantizeMatMul reads it directly).
        var x = form == LinearForm.DynamicQuantizeMatMul ? m["dq0"] : m["dq0"].Producer!.Input(0)!;
        return new LinearRole
        {
            Form = form, Node = node, Input = x, Output = m.Root, Weight = m["w"], Layout = WeightLayout.InOut,
            Bias = bias, Quantized = true, InFeatures = dims[0], OutFeatures = dims[1],
        };
    }
}
