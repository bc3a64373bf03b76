using OnnxOutlierTools.Import;
using OnnxOutlierTools.IO;
using OnnxOutlierTools.Mitigation.Folding;
using OnnxOutlierTools.Mitigation.Verification;
using OnnxOutlierTools.Runtime;
using OnnxOutlierTools.Structure.Recognition;
using OnnxOutlierTools.Tensors;
using OnnxOutlierTools.Tests.Import;

namespace OnnxOutlierTools.Tests.Mitigation;

public class EquivalenceProofTests
{
    /// <summary>stories260K with block 0's attention-norm gain divided by s and q/k/v's input rows multiplied by s (the
    /// fold of SCIENCE.md 2.1, by hand with the kernel), or with only the gain changed (a wrong fold).</summary>
    private static (string Original, string Rewritten) Fold(TempFolder temp, bool correct)
    {
        string original = temp.Path("original", "model.onnx");
        using (var model = LlamaOnnxBuilder.Build(Stories260K.Weights))
            ModelWriter.Save(model, original, new SaveOptions { Layout = TensorLayout.External, Durable = false });
        using var edited = ModelReader.Load(original);
        var block = StructureRecognizer.Recognize(edited).Structure!.Blocks[0];
        var gain = block.AttentionNorm!.Gain;
        int channels = (int)gain.ConstValue!.Dims[^1];
        var s = Enumerable.Range(0, channels).Select(j => 0.25 + j % 5).ToArray();
        edited.Graph.SetInitializerData(gain, ScaledTensor.ScaleColumns(gain.ConstValue, s.Select(v => 1 / v).ToArray()));
        if (correct)
            foreach (var linear in new[] { block.Attention!.Query!, block.Attention.Key!, block.Attention.ValueProjection! })
                edited.Graph.SetInitializerData(linear.Weight, ScaledTensor.ScaleRows(linear.Weight.ConstValue!, s));
        string rewritten = temp.Path("rewritten", "model.onnx");
        ModelWriter.Save(edited, rewritten, new SaveOptions { Layout = TensorLayout.External, Durable = false });
        return (original, rewritten);
    }

    private static IReadOnlyList<ProofCase> Cases(string path)
    {
        using var session = SessionFactory.Open(path, SessionSettings.CpuUnoptimized);
        var feeds = session.SynthesizeInputs(new InputSynthesisOptions { Dims = new Dictionary<string, long> { ["batch_size"] = 1, ["sequence_length"] = 12 }, IdUpperBound = 512 });
        return [new ProofCase(feeds, feeds)];
    }

    [Fact]
    public void ExactFold_Passes_WithItsDeviationReported()
    {
        using var temp = new TempFolder("proof-exact");
        var (original, rewritten) = Fold(temp, correct: true);
        var result = EquivalenceProof.Require("hand fold", original, rewritten, Cases(original), ProofTolerance.Float32);
        Assert.True(result.Exact);
        var logits = Assert.Single(result.Outputs);
        Assert.InRange(logits.RelativeToRange, 0, 1e-4);
        Assert.True(logits.ReferenceMaxAbs > 1);
    }

    [Fact]
    public void WrongScale_IsCaught_NamingTheRewriteAndTheOutput()
    {
        using var temp = new TempFolder("proof-wrong");
        var (original, rewritten) = Fold(temp, correct: false);
        var ex = Assert.Throws<NotEquivalentException>(() => EquivalenceProof.Require("hand fold", original, rewritten, Cases(original), ProofTolerance.Float32));
        Assert.StartsWith("hand fold is not exact: logits: max |diff|", ex.Message);
        Assert.False(ex.Result.Exact);
        Assert.True(ex.Result.Worst!.RelativeToRange > 1e-2);
    }

    [Fact]
    public void Tolerance_FollowsTheWeights()
    {
        Assert.Equal(ProofTolerance.Float16, ProofTolerance.For(TensorDataType.Float16));
        Assert.Equal(ProofTolerance.BFloat16, ProofTolerance.For(TensorDataType.BFloat16));
        Assert.Equal(ProofTolerance.Float32, ProofTolerance.For(TensorDataType.Float));
        Assert.Equal(1e-5 + 1e-4 * 10, ProofTolerance.Float32.Bound(10), 15);
    }
}
