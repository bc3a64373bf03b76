using OnnxOutlierTools.Ir;
using OnnxOutlierTools.Structure.Patterns;
using OnnxOutlierTools.Structure.Roles;
using OnnxOutlierTools.Structure.Rules;
using OnnxOutlierTools.Tensors;

namespace OnnxOutlierTools.Tests.Structure;

/// <summary>Linear-layer and FFN-activation rule variants on tiny graphs.</summary>
public class LinearAndFfnRuleTests
{
    private static float[] Ones(int n) => Enumerable.Repeat(1f, n).ToArray();

    private static List<LinearRole> Linears(GraphBuilder b) => LinearRules.Find(new Matcher(b.Graph));

    [Fact]
    public void MatMul_WithCommutedBiasAdd_RecordsInOutLayoutAndBias()
    {
        var b = new GraphBuilder();
        var x = b.Input("x", TensorDataType.Float, 1, 4, 8);
        var w = b.Initializer("w", Ones(8 * 16), 8, 16);
        var bias = b.Initializer("b", Ones(16));
        var y = b.Op("Add", bias, b.Op("MatMul", x, w));
        var l = Assert.Single(Linears(b));
        Assert.Equal((8L, 16L), (l.InFeatures, l.OutFeatures));
        Assert.Equal(WeightLayout.InOut, l.Layout);
        Assert.Same(bias, l.Bias);
        Assert.Same(y, l.Output);
    }

    [Fact]
    public void MatMul_ThroughTransposeOfOutInWeight_IsOutInLayout()
    {
        var b = new GraphBuilder();
        var x = b.Input("x", TensorDataType.Float, 1, 4, 8);
        var w = b.Initializer("w", Ones(16 * 8), 16, 8);
        b.Op("MatMul", x, b.Node("Transpose", [w], [Attr.Ints("perm", 1, 0)])[0]);
        var l = Assert.Single(Linears(b));
        Assert.Equal(WeightLayout.OutIn, l.Layout);
        Assert.Same(w, l.Weight);
        Assert.Equal((8L, 16L), (l.InFeatures, l.OutFeatures));
        Assert.Single(l.WeightPath);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(1)]
    public void Gemm_TransB_DecidesLayout(int transB)
    {
        var b = new GraphBuilder();
        var x = b.Input("x", TensorDataType.Float, 4, 8);
        var w = transB == 1 ? b.Initializer("w", Ones(16 * 8), 16, 8) : b.Initializer("w", Ones(8 * 16), 8, 16);
        b.Node("Gemm", [x, w, b.Initializer("c", Ones(16))], [Attr.Int("transB", transB)]);
        var l = Assert.Single(Linears(b));
        Assert.Equal(transB == 1 ? WeightLayout.OutIn : WeightLayout.InOut, l.Layout);
        Assert.Equal((8L, 16L), (l.InFeatures, l.OutFeatures));
        Assert.NotNull(l.Bias);
    }

    [Fact]
    public void MatMulNBits_IsFlaggedQuantized()
    {
        var b = new GraphBuilder();
        var x = b.Input("x", TensorDataType.Float, 1, 4, 64);
        var packed = b.Initializer("wq", new byte[16 * 2 * 16], 16, 2, 16);
        var scales = b.Initializer("scales", Ones(32));
        b.Node("MatMulNBits", [x, packed, scales], [Attr.Int("K", 64), Attr.Int("N", 16), Attr.Int("bits", 4), Attr.Int("block_size", 32)], "com.microsoft");
        var l = Assert.Single(Linears(b));
        Assert.True(l.Quantized);
        Assert.Equal(WeightLayout.OutIn, l.Layout);
        Assert.Equal((64L, 16L), (l.InFeatures, l.OutFeatures));
    }

    [Fact]
    public void MatMul_OfTwoComputedTensors_IsNotALinear()
    {
        var b = new GraphBuilder();
        var q = b.Input("q", TensorDataType.Float, 1, 4, 8);
        var k = b.Input("k", TensorDataType.Float, 1, 8, 4);
        b.Op("MatMul", q, k);
        Assert.Empty(Linears(b));
    }

    private static (GraphBuilder B, Value Gate, Value Up) Projections()
    {
        var b = new GraphBuilder();
        var x = b.Input("x", TensorDataType.Float, 1, 4, 8);
        var gate = b.Op("MatMul", x, b.Initializer("wg", Ones(8 * 16), 8, 16));
        var up = b.Op("MatMul", x, b.Initializer("wu", Ones(8 * 16), 8, 16));
        return (b, gate, up);
    }

    private static FfnMatch? MatchFfn(GraphBuilder b, Value root)
    {
        var matcher = new Matcher(b.Graph);
        var linears = LinearRules.Find(matcher).ToDictionary(l => l.Output);
        foreach (var rule in FfnRules.Create(v => linears.ContainsKey(v)))
            if (matcher.TryMatch(rule, root) is { } m) return rule.Build(m);
        return null;
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Glu_SiluEitherOperandOrder_BindsGateAndUp(bool swapped)
    {
        var (b, gate, up) = Projections();
        var sig = b.Op("Sigmoid", gate);
        var silu = swapped ? b.Op("Mul", sig, gate) : b.Op("Mul", gate, sig);
        var y6 = swapped ? b.Op("Mul", up, silu) : b.Op("Mul", silu, up);
        var m = MatchFfn(b, y6);
        Assert.NotNull(m);
        Assert.Equal((FfnKind.Glu, FfnActivation.Silu), (m!.Kind, m.Activation));
        Assert.Same(gate, m.GateOutput);
        Assert.Same(up, m.UpOutput);
    }

    [Fact]
    public void Glu_PackedGateUp_SplitOfOneProjection_IsRecognized()
    {
        var b = new GraphBuilder();
        var x = b.Input("x", TensorDataType.Float, 1, 4, 8);
        var gateUp = b.Op("MatMul", x, b.Initializer("w_gate_up", Ones(8 * 32), 8, 32));
        var halves = b.Node("Split", [gateUp], [Attr.Int("axis", -1)], outputs: 2);
        var y6 = b.Op("Mul", b.Op("Mul", halves[0], b.Op("Sigmoid", halves[0])), halves[1]);
        var m = MatchFfn(b, y6);
        Assert.Equal((FfnKind.Glu, FfnActivation.Silu), (m!.Kind, m.Activation));
        Assert.Same(gateUp, FfnRules.PackedPart(m.GateOutput!));
        Assert.Same(gateUp, FfnRules.PackedPart(m.UpOutput));
    }

    [Fact]
    public void Mlp_GeluErf_IsRecognized()
    {
        var (b, fc1, _) = Projections();
        var erf = b.Op("Erf", b.Op("Div", fc1, b.Scalar("sqrt2", 1.4142135f)));
        var y = b.Op("Mul", b.Op("Mul", fc1, b.Op("Add", erf, b.Scalar("one", 1f))), b.Scalar("half", 0.5f));
        var m = MatchFfn(b, y);
        Assert.Equal((FfnKind.Mlp, FfnActivation.GeluErf), (m!.Kind, m.Activation));
    }

    [Fact]
    public void Mlp_GeluTanh_IsRecognized()
    {
        var (b, x, _) = Projections();
        var inner = b.Op("Add", x, b.Op("Mul", b.Op("Pow", x, b.Scalar("three", 3f)), b.Scalar("c", 0.044715f)));
        var t = b.Op("Tanh", b.Op("Mul", inner, b.Scalar("s", 0.7978846f)));
        var y = b.Op("Mul", b.Op("Mul", x, b.Scalar("half", 0.5f)), b.Op("Add", t, b.Scalar("one", 1f)));
        Assert.Equal(FfnActivation.GeluTanh, MatchFfn(b, y)!.Activation);
    }

    [Fact]
    public void Mlp_FastGeluWithBias_BindsTheBias()
    {
        var (b, x, _) = Projections();
        var bias = b.Initializer("fc1_bias", Ones(16));
        var y = b.Node("FastGelu", [x, bias], domain: "com.microsoft")[0];
        var m = MatchFfn(b, y);
        Assert.Equal(FfnActivation.FastGelu, m!.Activation);
        Assert.Same(bias, m.ActivationBias);
    }

    [Fact]
    public void Mlp_Relu_IsRecognized_AndSigmoidAloneIsNot()
    {
        var (b, x, up) = Projections();
        Assert.Equal(FfnActivation.Relu, MatchFfn(b, b.Op("Relu", x))!.Activation);
        Assert.Null(MatchFfn(b, b.Op("Sigmoid", up)));
    }
}
