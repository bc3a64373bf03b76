using OnnxOutlierTools.Calibration;
using OnnxOutlierTools.Evaluation;
using OnnxOutlierTools.Import;
using OnnxOutlierTools.IO;
using OnnxOutlierTools.Runtime;
using OnnxOutlierTools.Tests.Import;
using OnnxOutlierTools.Tests.Mitigation.Measurement;

namespace OnnxOutlierTools.Tests.Evaluation;

/// <summary>The evaluator's perplexity against independent references: the PyTorch float32 figure of fixtures/MANIFEST.md
/// (stories260K, protocol A) for the torch export and for our own import of the checkpoint, and a float64 computation in
/// the test from ORT logits for strided, overlapping windows with a BOS prefix.</summary>
public class PerplexityReferenceTests
{
    private static string Text => Fixtures.Path("text", "tinystories-sample.txt");

    // MANIFEST.md "Reference numbers: stories260K", protocol A: paragraphs encoded with BOS, 78 non-overlapping windows of
    // 256 from the first 20,000 stream tokens, positions 1..255 scored: 19890 tokens, sum NLL 28399.1686, mean 1.427811, ppl 4.1696.
    private static EvalRequest ProtocolA(string model) => new()
    {
        Model = model, Text = Text, Tokenizer = Stories260K.TokenizerPath, Window = 256, MaxTokens = 20_000, Bos = EvalBosMode.Document,
        Device = ExecutionDevice.Cpu, BatchSize = 13,
    };

    private static void AssertProtocolA(EvalResult result)
    {
        Assert.Equal(78, result.Windows.Count);
        Assert.Equal(20_000, result.Windows.StreamTokens);
        Assert.Equal(32, result.Windows.DroppedTailTokens);
        Assert.Equal(19_890, result.Windows.ScoredTokens);
        var score = result.Perplexity!.Model;
        Assert.Equal(0, score.NonFinitePositions);
        Assert.InRange(Math.Abs(score.Perplexity / 4.1696 - 1), 0, 1e-3);      // the hard requirement
        Assert.InRange(Math.Abs(score.MeanNll / 1.427811 - 1), 0, 1e-5);       // what the figure is rounded from
        Assert.InRange(Math.Abs(score.SumNll / 28399.1686 - 1), 0, 1e-5);
    }

    [Fact]
    public void Evaluate_TorchExportOfStories260K_ProtocolA_IsThePyTorchPerplexity()
    {
        var result = ModelEvaluator.Evaluate(ProtocolA(Stories260K.TorchNoPast));
        AssertProtocolA(result);
        Assert.True(result.Settings.DocumentBos);
        Assert.Empty(result.Settings.WindowPrefix);
    }

    [Fact]
    public void Evaluate_OurImportOfStories260KWithKvCache_ProtocolA_IsThePyTorchPerplexity()
    {
        using var folder = new TempFolder("eval-import");
        using (var model = LlamaOnnxBuilder.Build(Stories260K.Weights, new LlamaOnnxOptions { Flavour = LlamaOnnxFlavour.DecomposedWithPast }))
            ModelWriter.Save(model, folder.Path("model.onnx"), new SaveOptions { Layout = TensorLayout.External, Durable = false });
        AssertProtocolA(ModelEvaluator.Evaluate(ProtocolA(folder.Path("model.onnx"))));
    }

    [Fact]
    public void Evaluate_OverlappingWindowsWithBos_EqualsFloat64PerplexityFromTheLogits()
    {
        const int Window = 48, Stride = 20, MaxTokens = 200;
        var result = ModelEvaluator.Evaluate(new EvalRequest
        {
            Model = CalibratedModel.Planted, Text = Text, Tokenizer = CalibratedModel.Tokenizer, Window = Window, Stride = Stride, MaxTokens = MaxTokens,
            Bos = EvalBosMode.Window, Device = ExecutionDevice.Cpu,
        });

        // Independently: the stream is the text's llama2.c encoding without BOS; each window = BOS + 47 stream tokens from
        // every 20th; a stream token is scored by the first window that holds it, unless it is that window's first text token.
        int[] stream = Llama2cTokenizer.Load(CalibratedModel.Tokenizer, 512).Encode(File.ReadAllText(Text)[..6000], bos: false)[..MaxTokens];
        int textLength = Window - 1;
        var scored = new bool[stream.Length];
        using var session = SessionFactory.Open(CalibratedModel.Planted, SessionSettings.CpuUnoptimized);
        var plan = FeedPlan.Create(session.ModelPath, session.Inputs, session.OutputNames);
        double nll = 0;
        long count = 0;
        int windows = 0;
        for (int start = 0; start + textLength <= stream.Length; start += Stride, windows++)
        {
            int[] fed = [1, .. stream[start..(start + textLength)]];
            var logits = session.Run(plan.Build(1, fed.Length, fed, 0, null), ["logits"])[0].Tensor.ToSingleArray();
            int vocab = logits.Length / fed.Length;
            for (int i = start + 1; i < start + textLength; i++)
            {
                if (scored[i]) continue;
                scored[i] = true;
                int position = i - start + 1; // fed position of stream[i] (after the BOS); its prediction is the row before
                var row = logits.AsSpan((position - 1) * vocab, vocab);
                double max = double.NegativeInfinity, sum = 0;
                foreach (float v in row) max = Math.Max(max, v);
                foreach (float v in row) sum += Math.Exp(v - max);
                nll += max + Math.Log(sum) - row[stream[i]];
                count++;
            }
        }
        Assert.Equal(windows, result.Windows.Count);
        Assert.Equal(count, result.Windows.ScoredTokens);
        Assert.Equal(8, windows);
        Assert.Equal(textLength - 1 + 7 * Stride, count); // window 0 scores 46, each later one its 20 new tokens
        Assert.Equal([1], result.Settings.WindowPrefix);
        // ORT with graph optimizations (the evaluator) against without (here): fp32 rounding of the logits only.
        Assert.Equal(Math.Exp(nll / count), result.Perplexity!.Model.Perplexity, Math.Exp(nll / count) * 1e-5);
    }

    [Fact]
    public void Strided_WindowsAndTargets_FollowTheHuggingFaceRule()
    {
        var stream = Enumerable.Range(0, 23).ToArray();
        var (windows, tail) = EvalWindows.Strided(stream, 10, 4);
        Assert.Equal([0, 4, 8, 12], windows.Select(w => w.SourceStart));
        Assert.Equal([1, 6, 6, 6], windows.Select(w => w.FirstTarget));
        Assert.Equal(1, tail); // stream token 22 is after the last window
        var (plain, plainTail) = EvalWindows.Strided(stream, 10, 10);
        Assert.Equal([1, 1], plain.Select(w => w.FirstTarget));
        Assert.Equal(3, plainTail);
        Assert.Throws<ArgumentOutOfRangeException>(() => EvalWindows.Strided(stream, 10, 11));
    }
}
