using OnnxOutlierTools.Ir;
using OnnxOutlierTools.Structure.Recognition;
using OnnxOutlierTools.Structure.Roles;
using OnnxOutlierTools.Tensors;

namespace OnnxOutlierTools.Tests.Structure;

/// <summary>Parallel attention + FFN blocks (GPT-J, GPT-NeoX, Phi-2): x + attn(ln(x)) + ffn(ln'(x)).</summary>
public class ParallelBlockTests
{
    private static Model Build(bool branchesFirst, bool sharedNorm, int layers = 2)
    {
        const int d = 16;
        var b = new GraphBuilder();
        var x = b.Input("hidden", TensorDataType.Float, 1, 4, d);
        var rng = new Random(3);
        Value W(string name, int rows, int cols) => b.Initializer(name, Enumerable.Range(0, rows * cols).Select(_ => (float)rng.NextDouble() - 0.5f).ToArray(), rows, cols);
        Value Ln(string name, Value input) => b.Node("LayerNormalization", [input, b.Initializer(name + ".weight", Enumerable.Repeat(1f, d).ToArray()),
            b.Initializer(name + ".bias", new float[d])], [Attr.Float("epsilon", 1e-5f)])[0];
        for (int l = 0; l < layers; l++)
        {
            var ln1 = Ln($"h.{l}.ln_1", x);
            var ln2 = sharedNorm ? ln1 : Ln($"h.{l}.ln_2", x);
            var q = b.Op("MatMul", ln1, W($"h.{l}.q", d, d));
            var k = b.Op("MatMul", ln1, W($"h.{l}.k", d, d));
            var v = b.Op("MatMul", ln1, W($"h.{l}.v", d, d));
            var scores = b.Op("Div", b.Op("MatMul", q, b.Node("Transpose", [k], [Attr.Ints("perm", 0, 2, 1)])[0]), b.Scalar($"h.{l}.sqrt_d", 4f));
            var attn = b.Op("MatMul", b.Node("Softmax", [scores], [Attr.Int("axis", -1)])[0], v);
            var o = b.Op("MatMul", attn, W($"h.{l}.o", d, d));
            var ffn = b.Op("MatMul", b.Op("Relu", b.Op("MatMul", ln2, W($"h.{l}.fc_in", d, 4 * d))), W($"h.{l}.fc_out", 4 * d, d));
            x = branchesFirst ? b.Op("Add", b.Op("Add", o, ffn), x) : b.Op("Add", b.Op("Add", x, o), ffn);
        }
        b.Output(Ln("ln_f", x), TensorDataType.Float, 1, 4, d);
        return b.ToModel();
    }

    [Theory]
    [InlineData(true, true)]   // GPT-J / Phi-2: one LayerNorm, (attn + ffn) + x
    [InlineData(false, false)] // GPT-NeoX: two LayerNorms, (x + attn) + ffn
    public void ParallelBlocks_AreRecognizedAndChained(bool branchesFirst, bool sharedNorm)
    {
        using var model = Build(branchesFirst, sharedNorm);
        var result = StructureRecognizer.Recognize(model);
        Assert.True(result.Recognized, result.Message + "\n" + StructureReport.ToText(result, explain: true));
        var s = result.Structure!;
        Assert.Equal(2, s.Blocks.Count);
        RecognizerFixtureTests.AssertCompleteBlocks(s);
        Assert.All(s.Blocks, blk =>
        {
            Assert.True(blk.ParallelResidual);
            Assert.Null(blk.AttentionResidual);
            Assert.Equal(NormPlacement.PreNorm, blk.Placement);
            Assert.Equal(sharedNorm, ReferenceEquals(blk.AttentionNorm, blk.FfnNorm));
            Assert.Equal((FfnKind.Mlp, FfnActivation.Relu), (blk.Ffn!.Kind, blk.Ffn.Activation));
            Assert.Equal((1, 16), (blk.Attention!.NumHeads, blk.Attention.HeadSize));
        });
        Assert.Equal("hidden", s.Blocks[0].ResidualIn.Value!.Name);
        Assert.Equal("ln_f.weight", s.FinalNorm!.Gain.Name);
    }
}
