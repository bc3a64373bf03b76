using OnnxOutlierTools.Runtime;
using OnnxOutlierTools.Tensors;

namespace OnnxOutlierTools.Tests.Runtime;

/// <summary>Each fixture runs on ORT 1.32 CPU with its recipe and gives the shapes and published facts
/// that MANIFEST.md records (independent references: the manifest's own runs and the torch reference).</summary>
public sealed class FixtureRunTests
{
    public static TheoryData<string, string, long[]> FirstOutputs => new()
    {
        { "bert-toy-torch", "prediction_scores", [1, 8, 99] },
        { "distilbert-optimum", "logits", [1, 2] },
        { "gpt2-ort-beamsearch", "sequences", [1, 1, 12] },
        { "gpt2-ort-fused-fp16", "logits", [1, 4, 1000] },
        { "gpt2-ort-fused-fp32", "logits", [1, 4, 1000] },
        { "gpt2-torch-nopast", "hidden_states", [1, 4, 4] },
        { "gpt2-torch-past", "last_state", [1, 1, 4] },
        { "llama-genai-gqa-fp32", "logits", [1, 4, 32000] },
        { "llama-genai-mha-fp16", "logits", [1, 4, 32000] },
        { "llama-mobius-opset24", "logits", [1, 4, 256] },
        { "llama-torch-nopast", "logits", [1, 4, 512] },
        { "llama-torch-past", "logits", [1, 4, 512] },
    };

    [Theory]
    [MemberData(nameof(FirstOutputs))]
    public void Run_FixtureRecipe_GivesManifestShapesAndFiniteValues(string fixture, string firstOutput, long[] dims)
    {
        var (_, outputs) = ReferenceRuns.Original(fixture);
        Assert.Equal(firstOutput, outputs[0].Name);
        Assert.Equal(dims, outputs[0].Dims);
        foreach (var output in outputs.Where(o => o.ElementType.IsFloatingPoint()))
            Assert.True(output.ToSingleArray().All(float.IsFinite), $"{output} has non-finite values");
    }

    [Fact]
    public void Run_PastRecipes_GivePresentOfPastPlusNew()
    {
        Assert.Equal([2L, 1, 2, 4, 2], ReferenceRuns.Original("gpt2-torch-past").Outputs.Single(o => o.Name == "present_0").Dims);
        Assert.Equal([2L, 1, 4, 7, 8], ReferenceRuns.Original("gpt2-ort-fused-fp32").Outputs.Single(o => o.Name == "present_4").Dims);
        Assert.Equal([1L, 1, 7, 16], ReferenceRuns.Original("llama-genai-gqa-fp32").Outputs.Single(o => o.Name == "present.1.key").Dims);
        Assert.Equal([1L, 4, 7, 8], ReferenceRuns.Original("llama-torch-past").Outputs.Single(o => o.Name == "present.4.value").Dims);
        Assert.Equal([1L, 16, 32], ReferenceRuns.Original("llama-mobius-opset24").Outputs.Single(o => o.Name == "updated_key_cache.0").Dims);
    }

    [Fact]
    public void Run_GenaiLlamaPrompt_LastPositionArgmaxIs21011InFp32AndFp16()
    {
        // MANIFEST: prompt of 4 ids (7i+3) with an empty past; last-position argmax 21011 in both flavours.
        var prompt = FixtureRecipes.Get("llama-genai-gqa-fp32").Inputs with
        {
            Dims = new Dictionary<string, long> { ["batch_size"] = 1, ["sequence_length"] = 4, ["past_sequence_length"] = 0, ["total_sequence_length"] = 4 },
        };
        foreach (string fixture in new[] { "llama-genai-gqa-fp32", "llama-genai-mha-fp16" })
        {
            var (_, outputs) = ModelRunner.RunSynthesized(FixtureRecipes.Get(fixture).ModelPath, prompt, SessionSettings.CpuUnoptimized);
            Assert.Equal(21011, LastPositionArgmax(outputs[0]));
        }
    }

    [Fact]
    public void Run_StoriesLlama_OnceUponATime_PredictsTheReferenceNextToken()
    {
        // MANIFEST reference numbers: "Once upon a time" = [1, 403, 407, 261, 378]; greedy continuation starts with 432 (",").
        long[] ids = [1, 403, 407, 261, 378];
        var options = FixtureRecipes.Get("llama-torch-nopast").Inputs with
        {
            Dims = new Dictionary<string, long> { ["batch_size"] = 1, ["sequence_length"] = ids.Length },
            Generators = new Dictionary<string, InputGenerator> { ["input_ids"] = InputSynthesizer.FromIndex((pos, _) => ids[pos]) },
        };
        var (_, outputs) = ModelRunner.RunSynthesized(FixtureRecipes.Get("llama-torch-nopast").ModelPath, options, SessionSettings.CpuUnoptimized);
        Assert.Equal(432, LastPositionArgmax(outputs[0]));
    }

    [Fact]
    public void Run_Gpt2Fp16_MatchesFp32WithinFp16Precision()
    {
        // MANIFEST: the fp16 export matches fp32 to ~1e-4 on its own inputs. Here the fp16 model also gets its
        // past rounded to fp16, so the bound is looser (measured 5.3e-4); the argmax must agree.
        var fp32 = ReferenceRuns.Original("gpt2-ort-fused-fp32").Outputs[0];
        var fp16 = ReferenceRuns.Original("gpt2-ort-fused-fp16").Outputs[0];
        Assert.Equal(LastPositionArgmax(fp32), LastPositionArgmax(fp16));
        var a = fp32.ToSingleArray();
        var b = fp16.ToSingleArray();
        double max = a.Zip(b, (x, y) => Math.Abs((double)x - y)).Max();
        Assert.True(max < 2e-3, $"max |fp32 - fp16| = {max}");
    }

    [Fact]
    public void Run_GenaiMhaFp16_PromptAfterPast_FailsWithModelRunException()
    {
        // MANIFEST: this builder flavour supports a prompt or a one-token decode only; seq 4 after past 3 fails in Expand.
        var options = FixtureRecipes.Get("llama-genai-mha-fp16").Inputs with
        {
            Dims = new Dictionary<string, long> { ["batch_size"] = 1, ["sequence_length"] = 4, ["past_sequence_length"] = 3, ["total_sequence_length"] = 7 },
            PositionOffset = 3,
        };
        var ex = Assert.Throws<ModelRunException>(() => ModelRunner.RunSynthesized(FixtureRecipes.Get("llama-genai-mha-fp16").ModelPath, options, SessionSettings.CpuUnoptimized));
        Assert.Contains("Expand", ex.Message);
        Assert.DoesNotContain('\n', ex.Message);
    }

    private static int LastPositionArgmax(TensorData logits)
    {
        var values = logits.ToSingleArray();
        int vocab = (int)logits.Dims[^1];
        var last = values.AsSpan(values.Length - vocab);
        int best = 0;
        for (int i = 1; i < last.Length; i++) if (last[i] > last[best]) best = i;
        return best;
    }
}
