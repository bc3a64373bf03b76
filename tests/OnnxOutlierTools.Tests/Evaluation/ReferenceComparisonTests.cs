using OnnxOutlierTools.Evaluation;
using OnnxOutlierTools.IO;
using OnnxOutlierTools.Mitigation.SinkBias;
using OnnxOutlierTools.Runtime;
using OnnxOutlierTools.Tensors;
using OnnxOutlierTools.Tests.Mitigation.Measurement;
using OnnxOutlierTools.Tests.Mitigation.SinkBias;

namespace OnnxOutlierTools.Tests.Evaluation;

/// <summary>KL, top-1 and cosine against a reference on real ORT sessions: a model against itself, against a perturbed copy,
/// a sink-bias model (fed text without its baked BOS) against its original, and MiniLM's embeddings against themselves.</summary>
public class ReferenceComparisonTests
{
    private static EvalRequest Planted(string model, string? reference = null) => new()
    {
        Model = model, Reference = reference, Text = CalibratedModel.Text, Tokenizer = CalibratedModel.Tokenizer, Window = 64, MaxTokens = 320,
        Device = ExecutionDevice.Cpu, BatchSize = 5,
    };

    [Fact]
    public void Evaluate_ModelAgainstItself_KlZeroTopOneAndEqualPerplexities()
    {
        var result = ModelEvaluator.Evaluate(Planted(CalibratedModel.Planted, CalibratedModel.Planted));
        var d = result.Divergence!;
        Assert.Equal(result.Windows.ScoredTokens, d.Positions);
        Assert.Equal(5, result.Windows.Count);
        Assert.Equal(0, d.MeanKl);
        Assert.Equal(0, d.MaxKl);
        Assert.Equal(1, d.Top1Agreement);
        Assert.Equal(result.Perplexity!.Model, result.Perplexity.Reference);
        Assert.Equal("window", result.Settings.BosResolved); // llama2.c tokenizers prepend BOS
    }

    [Fact]
    public void Evaluate_AgainstAPerturbedModel_KlPositiveAndPerplexityMoves()
    {
        using var folder = new TempFolder("eval-perturbed");
        using (var model = ModelReader.Load(CalibratedModel.Planted))
        {
            var head = CalibratedModel.Recognize(model).LmHead!.Weight;
            var w = head.ConstValue!.ToSingleArray();
            double rms = Math.Sqrt(w.Average(x => (double)x * x));
            var noise = new Random(42);
            for (int i = 0; i < w.Length; i++) w[i] += (float)(0.5 * rms * (2 * noise.NextDouble() - 1)); // seeded noise on the LM head
            head.Graph.SetInitializerData(head, ArrayTensor.Create<float>(w, head.ConstValue.Dims.ToArray()));
            ModelWriter.Save(model, folder.Path("model.onnx"), new SaveOptions { Layout = TensorLayout.External, Durable = false });
        }
        var result = ModelEvaluator.Evaluate(Planted(folder.Path("model.onnx"), CalibratedModel.Planted) with { Tokenizer = CalibratedModel.Tokenizer });
        string figures = result.ToJson();
        Assert.True(result.Divergence!.MeanKl > 1e-3, figures);
        Assert.True(result.Divergence.MaxKl >= result.Divergence.MeanKl, figures);
        Assert.True(result.Divergence.Top1Agreement < 1, figures);
        Assert.True(result.Perplexity!.Model.Perplexity > result.Perplexity.Reference!.Perplexity, figures);
    }

    [Fact]
    public void Evaluate_SinkBiasModel_FedWithoutItsPrefix_HasTheOriginalsPerplexity()
    {
        using var folder = new TempFolder("eval-sink");
        var (sinkModel, _, _) = SinkBiasHarness.Rewrite(CalibratedModel.Planted, folder.Path("sink"), SinkPrefix.Bos(1));
        var original = ModelEvaluator.Evaluate(Planted(CalibratedModel.Planted));
        var sink = ModelEvaluator.Evaluate(Planted(sinkModel));
        Assert.Equal([1], sink.Model.SinkPrefix);
        Assert.Equal(original.Windows, sink.Windows with { FedTokens = original.Windows.FedTokens });
        Assert.Equal(original.Windows.FedTokens - original.Windows.Count, sink.Windows.FedTokens); // the BOS is not fed
        Assert.Equal(original.Perplexity!.Model.Perplexity, sink.Perplexity!.Model.Perplexity, original.Perplexity.Model.Perplexity * 1e-5);

        // Side by side: the original gets BOS + text, the sink model the text; the same tokens are compared.
        var paired = ModelEvaluator.Evaluate(Planted(sinkModel, CalibratedModel.Planted));
        Assert.InRange(paired.Divergence!.MaxKl, 0, 1e-6);
        Assert.Equal(1, paired.Divergence.Top1Agreement);

        // A sink model is never fed a window without its prefix in front: --bos off is refused.
        var e = Assert.Throws<EvaluationInputException>(() => ModelEvaluator.Evaluate(Planted(sinkModel) with { Bos = EvalBosMode.Off }));
        Assert.Contains("baked sink prefix", e.Message);
    }

    [Fact]
    public void Evaluate_SinkBiasGqaModelWithKvCache_MatchesTheOriginalAndDecodes()
    {
        // GroupQueryAttention with a KV cache: the baked BOS is a past for every prompt, so windows run one at a time even
        // when a batch is asked for; decoding feeds back the present caches, which hold the text only.
        using var folder = new TempFolder("eval-sink-gqa");
        string original = RepositoryFiles.Path("onnx-models", "planted-llama-genai", "model.onnx");
        var (sinkModel, _, _) = SinkBiasHarness.Rewrite(original, folder.Path("sink"), SinkPrefix.Bos(1));
        var result = ModelEvaluator.Evaluate(Planted(sinkModel, original) with { Latency = new LatencySettings { Repetitions = 2, DecodeTokens = 4 } });
        Assert.InRange(result.Divergence!.MaxKl, 0, 1e-6);
        Assert.Equal(1, result.Divergence.Top1Agreement);
        Assert.Equal(result.Perplexity!.Reference!.Perplexity, result.Perplexity.Model.Perplexity, result.Perplexity.Model.Perplexity * 1e-5);
        Assert.Contains(result.Notes, n => n.Contains("one at a time"));
        Assert.Equal(4, result.Latency!.Model.DecodeTokens);
        Assert.Equal(63, result.Latency.Model.PromptTokens); // the text only; the reference is fed BOS + text
        Assert.Equal(64, result.Latency.Reference!.PromptTokens);
        Assert.True(result.Latency.Model.DecodeTokensPerSecond > 0);
    }

    [Fact]
    public void Evaluate_MiniLmAgainstItself_CosineOne()
    {
        var result = ModelEvaluator.Evaluate(new EvalRequest
        {
            Model = MiniLm.ModelPath, Reference = MiniLm.ModelPath, Text = Fixtures.Path("text", "prose-sample.txt"), Tokenizer = MiniLm.VocabPath,
            Window = 48, MaxTokens = 200, Device = ExecutionDevice.Cpu,
        });
        Assert.Equal("encoder", result.Model.Kind);
        Assert.Null(result.Perplexity);
        var e = result.Embedding!;
        Assert.True(e.Tokens > 100, $"{e.Tokens} tokens");
        Assert.Equal(1, e.MeanTokenCosine, 1e-9);
        Assert.Equal(1, e.MinTokenCosine, 1e-9);
        Assert.Equal(1, e.MeanPooledCosine, 1e-9);
    }
}
