using OnnxOutlierTools.Ir;
using OnnxOutlierTools.Structure.Patterns;
using OnnxOutlierTools.Structure.Roles;
using OnnxOutlierTools.Structure.Rules;
using OnnxOutlierTools.Tensors;

namespace OnnxOutlierTools.Tests.Structure;

/// <summary>The one rule set for ORT dynamic quantization's linears (both #7 branches brought one): every form is found
/// once per node, with the float activation as its input, and one DynamicQuantizeLinear may feed several linears.</summary>
public class QuantizedLinearRuleTests
{
    private const int In = 8, Out = 6;

    private static Value Weight(GraphBuilder b, string name) =>
        b.Initializer(name, Enumerable.Range(0, In * Out).Select(i => (sbyte)(i % 7 - 3)).ToArray(), In, Out);

    /// <summary>DynamicQuantizeLinear(x) feeding <paramref name="readers"/> unfused MatMulInteger linears (q/k/v reading one
    /// quantizer), each Mul(Cast?(MatMulInteger(x_q, W, x_zp)), Mul(x_scale, w_scale)).</summary>
    private static (Graph Graph, Value X) Unfused(int readers, bool cast = true, bool foreignZeroPoint = false)
    {
        var b = new GraphBuilder();
        var x = b.Input("x", TensorDataType.Float, 1, 5, In);
        var dql = b.Node("DynamicQuantizeLinear", [x], outputs: 3);
        var otherZp = foreignZeroPoint ? b.Node("DynamicQuantizeLinear", [b.Input("y", TensorDataType.Float, 1, 5, In)], outputs: 3)[2] : dql[2];
        for (int i = 0; i < readers; i++)
        {
            var mmi = b.Op("MatMulInteger", dql[0], Weight(b, $"w{i}"), otherZp);
            var product = cast ? b.Node("Cast", [mmi], [Attr.Int("to", (long)TensorDataType.Float)])[0] : mmi;
            var scale = b.Op("Mul", dql[1], b.Scalar($"w{i}_scale", 0.02f));
            b.Output(b.Op("Mul", product, scale), TensorDataType.Float, 1, 5, Out);
        }
        return (b.Graph, x);
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)] // the Cast to float may be absent
    public void MatMulInteger_OneLinearPerNode_SharedQuantizer(bool cast)
    {
        var (graph, x) = Unfused(readers: 3, cast);
        var linears = LinearRules.Find(new Matcher(graph));
        Assert.Equal(3, linears.Count);
        Assert.All(linears, l =>
        {
            Assert.Equal((LinearForm.MatMulInteger, true, (long)In, (long)Out), (l.Form, l.Quantized, l.InFeatures, l.OutFeatures));
            Assert.Same(x, l.Input);
            Assert.Equal(WeightLayout.InOut, l.Layout);
            Assert.Equal("Mul", l.Output.Producer!.OpType);
        });
        Assert.Equal(3, linears.Select(l => l.Node).Distinct().Count());
    }

    [Fact]
    public void MatMulInteger_ZeroPointFromAnotherQuantizer_IsANearMiss()
    {
        var (graph, _) = Unfused(readers: 1, foreignZeroPoint: true);
        var matcher = new Matcher(graph);
        Assert.Empty(LinearRules.Find(matcher));
        Assert.Contains("zero point", matcher.NearMisses["MatMulInteger+DynamicQuantizeLinear"].Reason);
    }

    [Fact]
    public void FusedForms_MatMulIntegerToFloatAndDynamicQuantizeMatMul()
    {
        var b = new GraphBuilder();
        var x = b.Input("x", TensorDataType.Float, 1, 5, In);
        var dql = b.Node("DynamicQuantizeLinear", [x], outputs: 3);
        var bias = b.Initializer("b0", new float[Out], Out);
        var toFloat = b.Node("MatMulIntegerToFloat", [dql[0], Weight(b, "w0"), dql[1], b.Scalar("w0_scale", 0.02f), dql[2], null, bias], domain: "com.microsoft")[0];
        var fused = b.Node("DynamicQuantizeMatMul", [x, Weight(b, "w1"), b.Scalar("w1_scale", 0.02f)], domain: "com.microsoft")[0];
        b.Output(toFloat, TensorDataType.Float, 1, 5, Out);
        b.Output(fused, TensorDataType.Float, 1, 5, Out);

        var linears = LinearRules.Find(new Matcher(b.Graph));
        Assert.Equal([LinearForm.MatMulIntegerToFloat, LinearForm.DynamicQuantizeMatMul], linears.Select(l => l.Form).ToArray());
        Assert.All(linears, l => Assert.Same(x, l.Input));
        Assert.Equal(("b0", true), (linears[0].Bias?.Name, linears[0].Quantized));
        Assert.Null(linears[1].Bias);
        Assert.Equal([toFloat, fused], linears.Select(l => l.Output).ToArray());
    }
}
