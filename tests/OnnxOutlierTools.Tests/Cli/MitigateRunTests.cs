using System.Text.Json;
using OnnxOutlierTools.Cli;
using OnnxOutlierTools.Cli.Mitigate;
using OnnxOutlierTools.Mitigation.Folding;
using OnnxOutlierTools.Mitigation.Pipeline;
using OnnxOutlierTools.Mitigation.Verification;

namespace OnnxOutlierTools.Tests.Cli;

/// <summary>The mitigate pipeline around any step: statistics, staged rewrite, proof, companions, before/after, report,
/// commit; and a step whose rewrite is wrong (a scale folded into the gain only) exits 3 and leaves nothing behind.</summary>
public class MitigateRunTests
{
    private static string Repo(params string[] parts) => RepositoryFiles.Path(parts);

    /// <summary>Block 0's attention-norm gain divided by s; q/k/v's input rows multiplied by s unless <c>wrong</c>.</summary>
    private sealed class HandFold(bool wrong) : MitigationStep
    {
        public override string Name => wrong ? "wrong-fold" : "hand-fold";
        public override StepExactness Exactness => StepExactness.Exact;

        public override StepReport Apply(MitigationContext context)
        {
            var block = context.Structure.Blocks[0];
            var gain = block.AttentionNorm!.Gain;
            int channels = (int)gain.ConstValue!.Dims[^1];
            var s = Enumerable.Range(0, channels).Select(j => j % 3 == 0 ? 4.0 : 0.5).ToArray();
            context.Model.Graph.SetInitializerData(gain, ScaledTensor.ScaleColumns(gain.ConstValue, s.Select(v => 1 / v).ToArray()));
            if (!wrong)
                foreach (var linear in new[] { block.Attention!.Query!, block.Attention.Key!, block.Attention.ValueProjection! })
                    context.Model.Graph.SetInitializerData(linear.Weight, ScaledTensor.ScaleRows(linear.Weight.ConstValue!, s));
            return new StepReport(Name, null, [$"block 0 attention norm: {channels} channels"], ChangedModel: true);
        }
    }

    private static MitigateRequest Request(TempFolder temp) => new()
    {
        Model = Repo("onnx-models", "planted-llama-decomposed", "model.onnx"),
        Text = Fixtures.Path("text", "tinystories-sample.txt"),
        Output = temp.Path("out"),
        SequenceLength = 64,
        MaxTokens = 256,
        Device = OnnxOutlierTools.Runtime.ExecutionDevice.Cpu,
    };

    [Fact]
    public void ExactStep_IsProven_AndTheFolderHasModelCompanionsAndReport()
    {
        using var temp = new TempFolder("mitigate-run");
        var request = Request(temp);
        var outcome = MitigateRun.Execute(request, [new HandFold(wrong: false)], TextWriter.Null);

        var stage = Assert.Single(outcome.Pipeline.Stages);
        Assert.True(stage.Proof!.Exact);
        Assert.Equal(2, stage.Proof.Runs);
        foreach (string file in new[] { "model.onnx", "config.json", "tokenizer.bin", MitigateRun.ReportFile })
            Assert.True(File.Exists(Path.Combine(request.Output, file)), file);
        // The fold moved the gain into q/k/v: block 0's attention input (the norm output) changed, the residual did not.
        var input = outcome.Changes.Single(c => c.Point == "block0.attention-input");
        Assert.NotEqual(input.MaxAbsBefore, input.MaxAbsAfter);
        var residual = outcome.Changes.Single(c => c.Point == "block0.residual");
        Assert.Equal(residual.MaxAbsBefore, residual.MaxAbsAfter, 3);
        using var report = JsonDocument.Parse(File.ReadAllText(Path.Combine(request.Output, MitigateRun.ReportFile)));
        Assert.Equal(MitigationReport.FormatName, report.RootElement.GetProperty("format").GetString());
        Assert.True(report.RootElement.GetProperty("stages")[0].GetProperty("proof").GetProperty("exact").GetBoolean());
        Assert.DoesNotContain(Directory.GetDirectories(temp.FullPath), d => Path.GetFileName(d).StartsWith('.'));

        // Again without --force: refused; with it, the folder mitigate wrote is replaced.
        Assert.Throws<OnnxOutlierTools.IO.OutputExistsException>(() => MitigateRun.Execute(request, [new HandFold(false)], TextWriter.Null));
        MitigateRun.Execute(request with { Force = true, CompareStatistics = false }, [new HandFold(false)], TextWriter.Null);
        Assert.True(File.Exists(Path.Combine(request.Output, "model.onnx")));
    }

    [Fact]
    public void WrongStep_Exits3_AndWritesNothing()
    {
        using var temp = new TempFolder("mitigate-wrong");
        var request = Request(temp);
        var ex = Assert.Throws<NotEquivalentException>(() => MitigateRun.Execute(request, [new HandFold(wrong: true)], TextWriter.Null));
        var error = new StringWriter();
        Assert.Equal(3, ErrorHandler.Report(ex, verbose: false, error));
        Assert.Contains("wrong-fold is not exact: logits", error.ToString());
        Assert.False(Directory.Exists(request.Output));
        Assert.Empty(Directory.GetFileSystemEntries(temp.FullPath));
    }

    [Fact]
    public void ForceNeverReplacesAFolderMitigateDidNotWrite()
    {
        using var temp = new TempFolder("mitigate-foreign");
        var request = Request(temp);
        Directory.CreateDirectory(request.Output);
        File.WriteAllText(Path.Combine(request.Output, "keep.txt"), "mine");
        var ex = Assert.Throws<UsageException>(() => MitigateRun.Execute(request with { Force = true }, [new HandFold(false)], TextWriter.Null));
        Assert.Contains("was not written by mitigate", ex.Message);
        Assert.Equal("mine", File.ReadAllText(Path.Combine(request.Output, "keep.txt")));
    }
}
