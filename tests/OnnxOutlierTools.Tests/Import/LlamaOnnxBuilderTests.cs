using OnnxOutlierTools.Import;
using OnnxOutlierTools.IO;
using OnnxOutlierTools.Ir;
using OnnxOutlierTools.Runtime;
using Xunit.Abstractions;

namespace OnnxOutlierTools.Tests.Import;

/// <summary>stories260K written by <see cref="LlamaOnnxBuilder"/> in each flavour, run on ORT CPU (optimizations
/// off) against the PyTorch exports llama-torch-nopast / llama-torch-past. Tolerance 1e-4 on logits (range ~ -20..22).</summary>
public class LlamaOnnxBuilderTests(Stories260KModels models, ITestOutputHelper output) : IClassFixture<Stories260KModels>
{
    private const double Tolerance = 1e-4;

    private static int[] SentenceIds => Stories260K.Tokenizer.Encode(Stories260K.Sentence);

    private static float[][] TorchLogits(int[] tokens)
    {
        using var torch = new KvCacheDecoder(Stories260K.TorchNoPast);
        return torch.Run(tokens).Logits;
    }

    private void AssertClose(string what, float[][] expected, float[][] actual, double tolerance = Tolerance)
    {
        double diff = Diff.MaxAbs(expected, actual);
        output.WriteLine($"{what}: max |diff| = {diff:E3}");
        Assert.True(diff <= tolerance, $"{what}: max |diff| {diff} > {tolerance}");
    }

    [Theory]
    [InlineData(LlamaOnnxFlavour.Decomposed)]
    [InlineData(LlamaOnnxFlavour.DecomposedWithPast)]
    [InlineData(LlamaOnnxFlavour.GenAiGqa)]
    public void Prompt_Sentence_MatchesTorchNoPast(LlamaOnnxFlavour flavour)
    {
        int[] ids = SentenceIds;
        using var ours = new KvCacheDecoder(models.PathOf(flavour));
        AssertClose($"{flavour} vs llama-torch-nopast, {ids.Length} tokens (empty past)", TorchLogits(ids), ours.Run(ids).Logits);
    }

    [Fact]
    public void DecomposedWithPast_PromptPresents_MatchTorchPast()
    {
        int[] ids = SentenceIds;
        using var ours = new KvCacheDecoder(models.PathOf(LlamaOnnxFlavour.DecomposedWithPast));
        using var torch = new KvCacheDecoder(Stories260K.TorchPast);
        var a = torch.Run(ids);
        var b = ours.Run(ids);
        AssertClose("DecomposedWithPast vs llama-torch-past logits", a.Logits, b.Logits);
        AssertClose("DecomposedWithPast vs llama-torch-past present keys", a.Present!.Keys, b.Present!.Keys);
        AssertClose("DecomposedWithPast vs llama-torch-past present values", a.Present.Values, b.Present.Values);
    }

    [Theory]
    [InlineData(LlamaOnnxFlavour.DecomposedWithPast)]
    [InlineData(LlamaOnnxFlavour.GenAiGqa)]
    public void TokenByToken_WithPast_MatchesTorch(LlamaOnnxFlavour flavour)
    {
        int[] ids = SentenceIds;
        var expected = TorchLogits(ids);
        using var ours = new KvCacheDecoder(models.PathOf(flavour));
        using var torchPast = new KvCacheDecoder(Stories260K.TorchPast);
        var cache = ours.EmptyCache();
        var torchCache = torchPast.EmptyCache();
        var stepLogits = new float[ids.Length][];
        var torchStepLogits = new float[ids.Length][];
        for (int t = 0; t < ids.Length; t++)
        {
            var step = ours.Run([ids[t]], cache);
            Assert.Equal(t + 1, step.Present!.Length);
            cache = step.Present;
            stepLogits[t] = step.Logits[0];
            var torchStep = torchPast.Run([ids[t]], torchCache);
            torchCache = torchStep.Present!;
            torchStepLogits[t] = torchStep.Logits[0];
        }
        AssertClose($"{flavour} token by token vs llama-torch-nopast", expected, stepLogits);
        AssertClose($"{flavour} token by token vs llama-torch-past token by token", torchStepLogits, stepLogits);
    }

    [Theory]
    [InlineData(LlamaOnnxFlavour.DecomposedWithPast)]
    [InlineData(LlamaOnnxFlavour.GenAiGqa)]
    public void Chunked_PastThenSeveralTokens_MatchesTorchNoPast(LlamaOnnxFlavour flavour)
    {
        int[] ids = SentenceIds;
        var expected = TorchLogits(ids);
        using var ours = new KvCacheDecoder(models.PathOf(flavour));
        var first = ours.Run(ids[..11]);
        var second = ours.Run(ids[11..], first.Present);
        Assert.Equal(ids.Length, second.Present!.Length);
        AssertClose($"{flavour} chunked (P 0 / S 11, then P 11 / S {ids.Length - 11}) vs llama-torch-nopast", expected, [.. first.Logits, .. second.Logits]);
    }

    [Theory]
    [InlineData(LlamaOnnxFlavour.Decomposed)]
    [InlineData(LlamaOnnxFlavour.DecomposedWithPast)]
    [InlineData(LlamaOnnxFlavour.GenAiGqa)]
    public void Greedy_OnceUponATime_ReproducesManifestText(LlamaOnnxFlavour flavour)
    {
        using var ours = new KvCacheDecoder(models.PathOf(flavour));
        var generated = new List<int>();
        if (ours.Layers == 0)
        {
            var sequence = new List<int>(Stories260K.OnceUponATime);
            for (int i = 0; i < 40; i++)
            {
                int next = Diff.ArgMax(ours.Run(sequence).Logits[^1]);
                generated.Add(next);
                sequence.Add(next);
            }
        }
        else
        {
            var step = ours.Run(Stories260K.OnceUponATime);
            for (int i = 0; i < 40; i++)
            {
                int next = Diff.ArgMax(step.Logits[^1]);
                generated.Add(next);
                if (i < 39) step = ours.Run([next], step.Present);
            }
        }
        Assert.Equal(Stories260K.GreedyContinuation, generated);
        Assert.Equal(Stories260K.GreedyText, Stories260K.Tokenizer.Decode(generated, previous: Stories260K.OnceUponATime[^1]));
    }

    [Fact]
    public void GenAiGqa_EmptyPastThenPast_PresentsGrow()
    {
        using var ours = new KvCacheDecoder(models.PathOf(LlamaOnnxFlavour.GenAiGqa));
        var empty = ours.Run(Stories260K.OnceUponATime, ours.EmptyCache());
        Assert.Equal(5, empty.Present!.Length);
        Assert.Equal(5 * 4 * 8, empty.Present.Keys[4].Length);
        var next = ours.Run([432], empty.Present);
        Assert.Equal(6, next.Present!.Length);
        Assert.All(next.Logits[0], v => Assert.True(float.IsFinite(v)));
        // The first 5 cached positions are carried over unchanged.
        for (int h = 0; h < 4; h++)
            Assert.Equal(empty.Present.Keys[0].AsSpan(h * 5 * 8, 5 * 8).ToArray(), next.Present.Keys[0].AsSpan(h * 6 * 8, 5 * 8).ToArray());
    }

    [Theory]
    [InlineData(LlamaOnnxFlavour.DecomposedWithPast)]
    [InlineData(LlamaOnnxFlavour.GenAiGqa)]
    public void Float16_Prompt_StaysCloseToReference(LlamaOnnxFlavour flavour)
    {
        int[] ids = SentenceIds;
        string dir = Path.Combine(models.Folder, $"{flavour}-fp16");
        using (var model = LlamaOnnxBuilder.Build(Stories260K.Weights, new LlamaOnnxOptions { Flavour = flavour, WeightType = Tensors.TensorDataType.Float16 }))
            ModelWriter.Save(model, Path.Combine(Directory.CreateDirectory(dir).FullName, "model.onnx"), new SaveOptions { Durable = false });
        using var ours = new KvCacheDecoder(Path.Combine(dir, "model.onnx"));
        Assert.True(ours.PastIsHalf);
        var step = ours.Run(ids[..10]);
        var rest = ours.Run(ids[10..], step.Present);
        var logits = step.Logits.Concat(rest.Logits).ToArray();
        var reference = Llama2cReference.Forward(Stories260K.Weights, ids);
        double diff = Diff.MaxAbs(reference, logits);
        int agree = Enumerable.Range(0, ids.Length).Count(t => Llama2cReference.ArgMax(reference[t]) == Diff.ArgMax(logits[t]));
        output.WriteLine($"{flavour} FLOAT16 vs float64 reference: max |diff| = {diff:E3}, argmax agreement {agree}/{ids.Length}");
        Assert.True(diff < 0.1, $"max |diff| {diff}");
        Assert.True(agree >= ids.Length - 1, $"argmax agreement {agree}/{ids.Length}");
    }

    [Fact]
    public void Decomposed_Graph_HasTheExportersOps()
    {
        using var model = ModelReader.Load(models.PathOf(LlamaOnnxFlavour.DecomposedWithPast));
        var ops = model.Graph.Nodes.GroupBy(n => n.OpType).ToDictionary(g => g.Key, g => g.Count());
        output.WriteLine(string.Join(", ", ops.OrderByDescending(kv => kv.Value).Select(kv => $"{kv.Key} {kv.Value}")));
        Assert.All(model.Graph.Nodes, n => Assert.True(n.IsDefaultDomain));
        Assert.Equal(11, ops["Pow"]);           // 2 norms x 5 layers + final
        Assert.Equal(11, ops["ReduceMean"]);
        Assert.Equal(11, ops["Sqrt"]);
        Assert.Equal(5 * 7 + 1, ops["MatMul"] - 5 * 2); // 7 projections per layer + lm_head, plus 2 attention MatMuls per layer
        Assert.Equal(5, ops["Softmax"]);
        Assert.Equal(5, ops["Sigmoid"]);
        Assert.Equal(10, ops["Neg"]);           // rotate_half for q and k
        Assert.Equal(10, ops["Expand"]);        // repeat_kv for k and v
        Assert.Equal(14, model.OpsetVersion(""));
        Assert.Equal(["input_ids", "attention_mask", "position_ids", "past_key_values.0.key"], model.Graph.Inputs.Take(4).Select(v => v.Name));
        Assert.Equal(["logits", "present.0.key", "present.0.value"], model.Graph.Outputs.Take(3).Select(v => v.Name));
        Assert.Equal("past_sequence_length + sequence_length", model.Graph.Outputs[1].Shape![2].Param);
        Assert.NotNull(model.Graph.FindInitializer("model.layers.3.self_attn.q_proj.weight"));
        Assert.Equal(new long[] { 64, 512 }, model.Graph.FindInitializer("lm_head.weight")!.ConstValue!.Dims);
        Assert.Contains(model.Graph.Nodes, n => n.Name == "/model/layers.0/self_attn/q_proj/MatMul");
    }

    [Fact]
    public void GenAiGqa_Graph_FollowsTheBuilderWiring()
    {
        // stories260K has head_size 8: ORT's fused GQA rotary needs a multiple of 16, so Auto picks the
        // builder's separate form (q/k/v MatMuls, RotaryEmbedding on q and k, GroupQueryAttention do_rotary=0).
        using var model = ModelReader.Load(models.PathOf(LlamaOnnxFlavour.GenAiGqa));
        var ops = model.Graph.Nodes.GroupBy(n => n.OpType).ToDictionary(g => g.Key, g => g.Count());
        output.WriteLine(string.Join(", ", ops.OrderByDescending(kv => kv.Value).Select(kv => $"{kv.Key} {kv.Value}")));
        Assert.Equal(5, ops["GroupQueryAttention"]);
        Assert.Equal(10, ops["RotaryEmbedding"]);
        Assert.Equal(2 * 5, ops["SkipSimplifiedLayerNormalization"]); // post-attention x5, input x4, final
        Assert.Equal(1, ops["SimplifiedLayerNormalization"]);
        Assert.Equal(5 * 7 + 1, ops["MatMul"]);
        Assert.Equal(1, model.OpsetVersion("com.microsoft"));
        var gqa = model.Graph.Nodes.First(n => n.OpType == "GroupQueryAttention");
        Assert.Equal("com.microsoft", gqa.Domain);
        Assert.Equal(0, gqa.GetInt("do_rotary", -1));
        Assert.Equal(8, gqa.GetInt("num_heads", -1));
        Assert.Equal(4, gqa.GetInt("kv_num_heads", -1));
        Assert.Equal("RotaryEmbedding", gqa.Inputs[0]!.Producer!.OpType);
        Assert.Equal(1, gqa.Inputs[0]!.Producer!.GetInt("interleaved", -1));
        Assert.Equal("past_key_values.0.key", gqa.Inputs[3]!.Name);
        Assert.Equal(["input_ids", "attention_mask", "past_key_values.0.key"], model.Graph.Inputs.Take(3).Select(v => v.Name));
        // The residual stream runs through SkipSimplifiedLayerNormalization output 3.
        var post0 = model.Graph.Nodes.First(n => n.Name == "/model/layers.0/post_attention_layernorm/SkipLayerNorm");
        Assert.Contains(post0.Outputs[3]!.Consumers, n => n.Name == "/model/layers.1/input_layernorm/SkipLayerNorm");
    }

    [Fact]
    public void GenAiGqa_FusedRotaryWithHeadSize8_IsRefusedWithReason()
    {
        var ex = Assert.Throws<ArgumentException>(() => LlamaOnnxBuilder.Build(Stories260K.Weights,
            new LlamaOnnxOptions { Flavour = LlamaOnnxFlavour.GenAiGqa, GqaRotary = GqaRotary.Fused }));
        Assert.Contains("multiple of 16", ex.Message);
    }
}
