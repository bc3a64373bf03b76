using OnnxOutlierTools.Import;
using OnnxOutlierTools.IO;
using OnnxOutlierTools.Tensors;
using OnnxOutlierTools.Runtime;
using Xunit.Abstractions;

namespace OnnxOutlierTools.Tests.Import;

/// <summary>Seeded synthetic decoders through every writer, checked against the float64 llama2.c reference on ORT CPU.</summary>
public sealed class SyntheticDecoderTests(ITestOutputHelper output) : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("oot-synth-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    public static TheoryData<string, LlamaOnnxFlavour, GqaRotary> Cases()
    {
        var data = new TheoryData<string, LlamaOnnxFlavour, GqaRotary>();
        foreach (string config in new[] { "gqa-hs16", "mha-hs16", "rotate-half-hs16", "gqa-hs8" })
        {
            data.Add(config, LlamaOnnxFlavour.Decomposed, GqaRotary.Auto);
            data.Add(config, LlamaOnnxFlavour.DecomposedWithPast, GqaRotary.Auto);
            data.Add(config, LlamaOnnxFlavour.GenAiGqa, GqaRotary.Separate);
            if (!config.EndsWith("hs8", StringComparison.Ordinal)) data.Add(config, LlamaOnnxFlavour.GenAiGqa, GqaRotary.Fused);
        }
        return data;
    }

    private static DecoderConfig Config(string name) => name switch
    {
        "gqa-hs16" => new DecoderConfig(64, 96, 2, 4, 2, 128, 64),
        "mha-hs16" => new DecoderConfig(32, 80, 2, 2, 2, 100, 64, sharedClassifier: false),
        "rotate-half-hs16" => new DecoderConfig(64, 96, 2, 4, 1, 128, 64, ropeTheta: 500000, ropeLayout: RopeLayout.RotateHalf),
        "gqa-hs8" => new DecoderConfig(64, 176, 2, 8, 4, 256, 128),
        _ => throw new ArgumentException(name),
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public void Flavour_MatchesFloat64Reference(string configName, LlamaOnnxFlavour flavour, GqaRotary rotary)
    {
        var config = Config(configName);
        var weights = SyntheticDecoder.Create(config, seed: 11);
        int[] tokens = Enumerable.Range(0, 14).Select(i => (7 * i + 3) % config.VocabSize).ToArray();
        var reference = Llama2cReference.Forward(weights, tokens);

        string path = Path.Combine(_dir, $"{configName}-{flavour}-{rotary}.onnx");
        using (var model = LlamaOnnxBuilder.Build(weights, new LlamaOnnxOptions { Flavour = flavour, GqaRotary = rotary }))
            ModelWriter.Save(model, path, new SaveOptions { Durable = false });
        using var ort = new KvCacheDecoder(path);
        float[][] logits;
        if (ort.Layers == 0) logits = ort.Run(tokens).Logits;
        else
        {
            var first = ort.Run(tokens[..9]);
            var second = ort.Run(tokens[9..12], first.Present);
            var third = ort.Run(tokens[12..13], second.Present);
            var fourth = ort.Run(tokens[13..], third.Present);
            Assert.Equal(14, fourth.Present!.Length);
            logits = [.. first.Logits, .. second.Logits, .. third.Logits, .. fourth.Logits];
        }
        double diff = Diff.MaxAbs(reference, logits);
        double range = reference.SelectMany(r => r).Max(Math.Abs);
        output.WriteLine($"{configName} {flavour} {rotary}: max |diff| vs float64 = {diff:E3} (max |logit| {range:F2})");
        Assert.True(diff <= 1e-4, $"max |diff| {diff}");
    }

    [Theory]
    [InlineData(LlamaOnnxFlavour.Decomposed, GqaRotary.Auto)]
    [InlineData(LlamaOnnxFlavour.GenAiGqa, GqaRotary.Fused)]
    [InlineData(LlamaOnnxFlavour.GenAiGqa, GqaRotary.Separate)]
    public void Float16_StaysCloseToFloat64Reference(LlamaOnnxFlavour flavour, GqaRotary rotary)
    {
        var config = Config("gqa-hs16");
        var weights = SyntheticDecoder.Create(config, seed: 11);
        int[] tokens = Enumerable.Range(0, 14).Select(i => (7 * i + 3) % config.VocabSize).ToArray();
        var reference = Llama2cReference.Forward(weights, tokens);
        string path = Path.Combine(_dir, $"fp16-{flavour}-{rotary}.onnx");
        using (var model = LlamaOnnxBuilder.Build(weights, new LlamaOnnxOptions { Flavour = flavour, GqaRotary = rotary, WeightType = TensorDataType.Float16 }))
            ModelWriter.Save(model, path, new SaveOptions { Durable = false });
        using var ort = new KvCacheDecoder(path);
        var logits = ort.Run(tokens).Logits;
        double diff = Diff.MaxAbs(reference, logits);
        int agree = Enumerable.Range(0, tokens.Length).Count(t => Llama2cReference.ArgMax(reference[t]) == Diff.ArgMax(logits[t]));
        output.WriteLine($"gqa-hs16 {flavour} {rotary} FLOAT16: max |diff| vs float64 = {diff:E3}, argmax agreement {agree}/{tokens.Length}");
        Assert.True(diff < 0.5, $"max |diff| {diff}");
        Assert.True(agree >= tokens.Length - 1, $"argmax agreement {agree}/{tokens.Length}");
    }

    [Fact]
    public void Create_SameSeed_SameWeights_DifferentSeed_Different()
    {
        var c = SyntheticDecoder.TinyConfig;
        var a = SyntheticDecoder.Create(c, 3);
        var b = SyntheticDecoder.Create(c, 3);
        var other = SyntheticDecoder.Create(c, 4);
        Assert.Equal(a.Layers[1].W2, b.Layers[1].W2);
        Assert.NotEqual(a.Layers[1].W2, other.Layers[1].W2);
        Assert.All(a.TokenEmbedding, v => Assert.True(float.IsFinite(v)));
    }

    [Fact]
    public void BenchmarkConfig_OneGigabyte_IsLlamaShapedAndNearTheTarget()
    {
        var c = SyntheticDecoder.BenchmarkConfig(1.0);
        double gib = c.ParameterCount * 2.0 / (1L << 30);
        output.WriteLine($"bench config: {c.Layers} layers, {c.ParameterCount} parameters, {gib:F3} GiB FLOAT16");
        Assert.InRange(gib, 0.9, 1.1);
        Assert.Equal((2048, 5632, 32, 4), (c.Dim, c.HiddenDim, c.Heads, c.KvHeads));
    }

    [Fact]
    public void BenchmarkModel_SmallShape_SavesLoadsAndRuns()
    {
        var config = new DecoderConfig(128, 320, 2, 8, 2, 1000, 64, sharedClassifier: false);
        string path = Path.Combine(_dir, "bench", "model.onnx");
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        using (var model = SyntheticDecoder.CreateBenchmarkModel(config, seed: 1))
        {
            var embedding = model.Graph.FindInitializer("model.embed_tokens.weight")!.ConstValue!;
            Assert.IsType<GeneratedTensor>(embedding);
            Assert.Equal(TensorDataType.Float16, embedding.DataType);
            // Chunks are position-independent: any slice equals the same bytes of the whole.
            var whole = embedding.Bytes.ToArray();
            Assert.Equal(whole.AsSpan(1001, 777).ToArray(), embedding.GetBytes(1001, 777).ToArray());
            var result = ModelWriter.Save(model, path, new SaveOptions { Layout = TensorLayout.External, Durable = false });
            Assert.True(result.ExternalBytes >= config.ParameterCount * 2);
        }
        using (var loaded = ModelReader.Load(path))
        {
            var embedding = loaded.Graph.FindInitializer("model.embed_tokens.weight")!.ConstValue!;
            Assert.Equal(TensorStorage.External, embedding.Storage);
        }
        using var ort = new KvCacheDecoder(path);
        var logits = ort.Run([1, 2, 3, 4]).Logits;
        Assert.Equal(1000, logits[0].Length);
        Assert.All(logits.SelectMany(l => l), v => Assert.True(float.IsFinite(v)));
    }
}
