using OnnxOutlierTools.Ir;
using OnnxOutlierTools.Structure.Recognition;
using OnnxOutlierTools.Tensors;

namespace OnnxOutlierTools.Tests.Structure;

/// <summary>Decomposed attention variants on a small hand-built pre-norm block.</summary>
public class AttentionVariantTests
{
    /// <summary>One pre-norm block of width 32 with 4 heads of 8; <paramref name="scaling"/> says how
    /// 1/sqrt(8) is applied: "after" (Div of the scores), "q" (Q divided first, as BERT),
    /// "sdpa" (Q and K each multiplied by Sqrt(Constant 1/sqrt(8)), as torch's scaled_dot_product_attention export).</summary>
    private static Model Build(string scaling)
    {
        const int d = 32, heads = 4, hs = 8;
        var b = new GraphBuilder();
        var x = b.Input("x", TensorDataType.Float, 1, 5, d);
        var rng = new Random(9);
        Value W(string name, int rows, int cols) => b.Initializer(name, Enumerable.Range(0, rows * cols).Select(_ => (float)rng.NextDouble() - 0.5f).ToArray(), rows, cols);
        Value Rms(string name, Value input) => b.Node("SimplifiedLayerNormalization", [input, b.Initializer(name, Enumerable.Repeat(1f, d).ToArray())], [Attr.Float("epsilon", 1e-6f)])[0];
        Value Heads(Value v) => b.Node("Transpose", [b.Op("Reshape", v, b.Initializer("shape", new long[] { 1, 5, heads, hs }, 4))], [Attr.Ints("perm", 0, 2, 1, 3)])[0];
        var h = Rms("ln1", x);
        var q = Heads(b.Op("MatMul", h, W("wq", d, d)));
        var k = Heads(b.Op("MatMul", h, W("wk", d, d)));
        var v = Heads(b.Op("MatMul", h, W("wv", d, d)));
        var kT = b.Node("Transpose", [k], [Attr.Ints("perm", 0, 1, 3, 2)])[0];
        Value scores = scaling switch
        {
            "after" => b.Op("Div", b.Op("MatMul", q, kT), b.Scalar("sqrt_hs", MathF.Sqrt(hs))),
            "q" => b.Op("MatMul", b.Op("Div", q, b.Scalar("sqrt_hs", MathF.Sqrt(hs))), kT),
            _ => b.Op("MatMul", b.Op("Mul", q, b.Op("Sqrt", b.Scalar("scale", 1 / MathF.Sqrt(hs)))), b.Op("Mul", kT, b.Op("Sqrt", b.Scalar("scale2", 1 / MathF.Sqrt(hs))))),
        };
        var attn = b.Op("MatMul", b.Node("Softmax", [scores], [Attr.Int("axis", -1)])[0], v);
        var merged = b.Op("Reshape", b.Node("Transpose", [attn], [Attr.Ints("perm", 0, 2, 1, 3)])[0], b.Initializer("merged", new long[] { 1, 5, d }, 3));
        var mid = b.Op("Add", x, b.Op("MatMul", merged, W("wo", d, d)));
        var ffn = b.Op("MatMul", b.Op("Relu", b.Op("MatMul", Rms("ln2", mid), W("w1", d, 64))), W("w2", 64, d));
        b.Output(b.Op("Add", mid, ffn), TensorDataType.Float, 1, 5, d);
        return b.ToModel();
    }

    [Theory]
    [InlineData("after")]
    [InlineData("q")]
    [InlineData("sdpa")]
    public void ScaleForms_GiveHeadGeometry(string scaling)
    {
        using var model = Build(scaling);
        var result = StructureRecognizer.Recognize(model);
        Assert.True(result.Recognized, result.Message + "\n" + StructureReport.ToText(result, explain: true));
        var block = Assert.Single(result.Structure!.Blocks);
        RecognizerFixtureTests.AssertCompleteBlocks(result.Structure);
        Assert.Equal((4, 4, 8), (block.Attention!.NumHeads, block.Attention.KvHeads, block.Attention.HeadSize));
        Assert.Equal("x", block.ResidualIn.Value!.Name);
    }
}
