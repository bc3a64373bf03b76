using OnnxOutlierTools.Ir;
using OnnxOutlierTools.Structure.Patterns;
using OnnxOutlierTools.Structure.Roles;
using OnnxOutlierTools.Structure.Rules;
using OnnxOutlierTools.Tensors;

namespace OnnxOutlierTools.Tests.Structure;

/// <summary>Each norm rule variant on a tiny hand-built graph, positive and negative.</summary>
public class NormRuleTests
{
    private const string Ms = "com.microsoft";

    private static List<NormRole> Norms(GraphBuilder b)
    {
        return NormRules.Find(new Matcher(b.Graph));
    }

    private static (GraphBuilder B, Value X, Value Gain) Start(int channels = 8)
    {
        var b = new GraphBuilder();
        var x = b.Input("x", TensorDataType.Float, 1, 4, channels);
        var gain = b.Initializer("gamma", Enumerable.Range(1, channels).Select(i => (float)i).ToArray());
        return (b, x, gain);
    }

    [Fact]
    public void Fused_LayerNormalization_BindsGainBiasAndEpsilon()
    {
        var (b, x, gain) = Start();
        var beta = b.Initializer("beta", new float[8]);
        var y = b.Node("LayerNormalization", [x, gain, beta], [Attr.Float("epsilon", 1e-5f)])[0];
        var norm = Assert.Single(Norms(b));
        Assert.Equal(NormKind.LayerNorm, norm.Kind);
        Assert.Same(gain, norm.Gain);
        Assert.Same(beta, norm.Bias);
        Assert.Same(y, norm.Output);
        Assert.Same(x, norm.Input.Value);
        Assert.Equal(1e-5, norm.Epsilon!.Value, 6);
    }

    [Theory]
    [InlineData("SimplifiedLayerNormalization")]
    [InlineData("RMSNormalization")]
    public void Fused_RmsForms_AreRmsNorms(string op)
    {
        var (b, x, gain) = Start();
        b.Node(op, [x, gain], [Attr.Float("epsilon", 1e-6f)]);
        var norm = Assert.Single(Norms(b));
        Assert.Equal(NormKind.RmsNorm, norm.Kind);
        Assert.Equal(op, norm.Form.Name());
    }

    [Fact]
    public void SkipSimplifiedLayerNorm_RecordsResidualSumOutput_EmittedOrNot()
    {
        var (b, x, gain) = Start();
        var skip = b.Input("skip", TensorDataType.Float, 1, 4, 8);
        var emitted = b.Node("SkipSimplifiedLayerNormalization", [x, skip, gain], domain: Ms, outputNames: ["y", null, null, "sum"]);
        b.Node("SkipSimplifiedLayerNormalization", [emitted[0], skip, gain], domain: Ms, outputNames: ["y2"]);
        var norms = Norms(b);
        Assert.Equal(2, norms.Count);
        Assert.True(norms[0].ResidualSum!.IsEmitted);
        Assert.Equal("sum", norms[0].ResidualSum!.Value!.Name);
        Assert.False(norms[1].ResidualSum!.IsEmitted);
        Assert.Equal(3, norms[1].ResidualSum!.OutputIndex);
        Assert.Same(skip, norms[1].Skip);
        Assert.True(gain.Uses.Count > 1); // shared gain is still bound to both norms
        Assert.All(norms, n => Assert.Same(gain, n.Gain));
    }

    /// <summary>x / sqrt(mean(x^2) + eps) * gamma in its three spellings.</summary>
    [Theory]
    [InlineData("div")]
    [InlineData("reciprocal")]
    [InlineData("one-over")]
    [InlineData("rsqrt-pow")]
    [InlineData("pow-half")]
    public void DecomposedRms_Variants_AreRecognized(string form)
    {
        var (b, x, gain) = Start();
        var sq = b.Op("Pow", x, b.Scalar("two", 2f));
        var mean = b.Node("ReduceMean", [sq], [Attr.Ints("axes", -1)])[0];
        var meanSquare = b.Op("Add", mean, b.Scalar("eps", 1e-5f));
        Value Rms() => form == "pow-half" ? b.Op("Pow", meanSquare, b.Scalar("half", 0.5f)) : b.Op("Sqrt", meanSquare);
        var normalized = form switch
        {
            "div" or "pow-half" => b.Op("Div", x, Rms()),
            "rsqrt-pow" => b.Op("Mul", x, b.Op("Pow", meanSquare, b.Scalar("minus_half", -0.5f))),
            "reciprocal" => b.Op("Mul", b.Op("Reciprocal", Rms()), x),
            _ => b.Op("Mul", x, b.Op("Div", b.Scalar("one", 1f), Rms())),
        };
        var y = b.Op("Mul", gain, normalized);
        var norm = Assert.Single(Norms(b));
        Assert.Equal(NormForm.DecomposedRmsNorm, norm.Form);
        Assert.Same(x, norm.Input.Value);
        Assert.Same(y, norm.Output);
        Assert.Equal(1e-5, norm.Epsilon!.Value, 6);
    }

    [Fact]
    public void DecomposedRms_WithCastsAndGainBehindCast_BindsTheInitializer()
    {
        var b = new GraphBuilder();
        var x = b.Input("x", TensorDataType.Float, 1, 4, 8);
        var gain16 = b.Initializer("gamma16", Enumerable.Range(1, 8).Select(i => (Half)i).ToArray());
        var gain = b.Node("Cast", [gain16], [Attr.Int("to", 1)])[0];
        var xc = b.Node("Cast", [x], [Attr.Int("to", 1)])[0];
        var mean = b.Node("ReduceMean", [b.Op("Pow", xc, b.Scalar("two", 2f))], [Attr.Ints("axes", -1)])[0];
        var normalized = b.Op("Mul", xc, b.Op("Div", b.Scalar("one", 1f), b.Op("Sqrt", b.Op("Add", mean, b.Scalar("eps", 1e-6f)))));
        var cast = b.Node("Cast", [normalized], [Attr.Int("to", 1)])[0];
        b.Op("Mul", gain, cast);
        var norm = Assert.Single(Norms(b));
        Assert.Same(gain16, norm.Gain);
        Assert.Same(xc, norm.Input.Value);
    }

    [Fact]
    public void DecomposedLayerNorm_SharedAndDuplicatedCentering_AreRecognized()
    {
        foreach (bool duplicated in new[] { false, true })
        {
            var (b, x, gain) = Start();
            var beta = b.Initializer("beta", new float[8]);
            var mean = b.Node("ReduceMean", [x], [Attr.Ints("axes", -1)])[0];
            var d = b.Op("Sub", x, mean);
            var variance = b.Node("ReduceMean", [b.Op("Pow", d, b.Scalar("two", 2f))], [Attr.Ints("axes", -1)])[0];
            var std = b.Op("Sqrt", b.Op("Add", variance, b.Scalar("eps", 1e-12f)));
            var numerator = duplicated ? b.Op("Sub", x, mean) : d;
            b.Op("Add", b.Op("Mul", b.Op("Div", numerator, std), gain), beta);
            var norm = Assert.Single(Norms(b));
            Assert.Equal(NormForm.DecomposedLayerNorm, norm.Form);
            Assert.Same(beta, norm.Bias);
        }
    }

    [Fact]
    public void DecomposedRms_ScalarGain_IsRefusedWithAReason()
    {
        var b = new GraphBuilder();
        var x = b.Input("x", TensorDataType.Float, 1, 4, 8);
        var mean = b.Node("ReduceMean", [b.Op("Pow", x, b.Scalar("two", 2f))], [Attr.Ints("axes", -1)])[0];
        b.Op("Mul", b.Op("Div", x, b.Op("Sqrt", b.Op("Add", mean, b.Scalar("eps", 1e-6f)))), b.Scalar("notagain", 3f));
        var matcher = new Matcher(b.Graph);
        Assert.Empty(matcher.ApplyFirst(NormRules.All));
        Assert.Contains("not a per-channel vector", matcher.NearMisses["DecomposedRmsNorm"].Reason);
    }

    [Fact]
    public void DecomposedRms_InnerValueUsedElsewhere_IsRefusedAsEscape()
    {
        var (b, x, gain) = Start();
        var mean = b.Node("ReduceMean", [b.Op("Pow", x, b.Scalar("two", 2f))], [Attr.Ints("axes", -1)])[0];
        var rms = b.Op("Sqrt", b.Op("Add", mean, b.Scalar("eps", 1e-6f)));
        b.Op("Mul", b.Op("Div", x, rms), gain);
        b.Op("Neg", rms); // the inner rms escapes the match
        var matcher = new Matcher(b.Graph);
        Assert.Empty(matcher.ApplyFirst(NormRules.All));
        Assert.Contains("used outside the match", matcher.NearMisses["DecomposedRmsNorm"].Reason);
    }
}
