using OnnxOutlierTools.Import;
using OnnxOutlierTools.IO;
using OnnxOutlierTools.Runtime;
using OnnxOutlierTools.Structure.Recognition;
using OnnxOutlierTools.Structure.Roles;
using OnnxOutlierTools.Tests.Cli;

namespace OnnxOutlierTools.Tests.Structure;

/// <summary>Decoders split across files (#7 item 6): a decoder fed inputs_embeds records that its embedding lives in another
/// model, and <c>inspect --layers --embedding-model</c> reports that model's Gather as the decoder's embedding.</summary>
public class SplitEmbeddingTests
{
    private static readonly DecoderConfig Config = SyntheticDecoder.TinyConfig;

    /// <summary>The split pair written to a folder: embed.onnx, decoder.onnx and the unsplit model.onnx.</summary>
    private static (string Embed, string Decoder, string Whole) Write(TempFolder dir)
    {
        var weights = SyntheticDecoder.Create(Config, SyntheticDecoder.TinySeed);
        var (embedding, decoder) = SplitEmbedding.Build(weights);
        using (embedding) ModelWriter.Save(embedding, dir.Path("embed.onnx"));
        using (decoder) ModelWriter.Save(decoder, dir.Path("decoder.onnx"));
        using (var whole = LlamaOnnxBuilder.Build(weights)) ModelWriter.Save(whole, dir.Path("model.onnx"));
        return (dir.Path("embed.onnx"), dir.Path("decoder.onnx"), dir.Path("model.onnx"));
    }

    [Fact]
    public void SplitPair_EmbeddingThenDecoder_EqualsUnsplitLogits()
    {
        using var dir = new TempFolder("split");
        var (embed, decoder, whole) = Write(dir);
        long[] ids = [1, 17, 42, 255, 3, 99];
        int S = ids.Length;
        var idsT = TensorData.Create("input_ids", ids, 1, S);
        var mask = TensorData.Create("attention_mask", Enumerable.Repeat(1L, S).ToArray(), 1, S);
        var pos = TensorData.Create("position_ids", Enumerable.Range(0, S).Select(i => (long)i).ToArray(), 1, S);
        var settings = SessionSettings.CpuUnoptimized;
        var embeds = ModelRunner.Run(embed, [idsT], settings)[0];
        Assert.Equal([1L, S, Config.Dim], embeds.Dims);
        var split = ModelRunner.Run(decoder, [embeds.WithName("inputs_embeds"), mask, pos], settings, ["logits"])[0].ToSingleArray();
        var reference = ModelRunner.Run(whole, [idsT, mask, pos], settings, ["logits"])[0].ToSingleArray();
        Assert.Equal(reference.Length, split.Length);
        // The same ops on the same numbers in the same order: bit-identical.
        Assert.Equal(reference, split);
    }

    [Fact]
    public void InputsEmbedsDecoder_RecordsExternalEmbedding()
    {
        using var dir = new TempFolder("split");
        var (_, decoder, _) = Write(dir);
        using var model = ModelReader.Load(decoder);
        var s = StructureRecognizer.Recognize(model).Structure!;
        Assert.Null(s.Embedding);
        Assert.Equal("inputs_embeds", s.ExternalEmbedding!.InputsEmbeds.Name);
        Assert.Equal(Config.Dim, s.ExternalEmbedding.HiddenSize);
        Assert.Null(s.ExternalEmbedding.Linked);
        Assert.Same(s.ExternalEmbedding, Assert.Single(s.Hints.OfType<ExternalEmbeddingHint>()).Embedding);
        Assert.Contains(s.Hints, h => StructureReport.HintText(h).Contains("--embedding-model"));
        Assert.Equal(Config.Layers, s.Blocks.Count);
    }

    [Theory]
    [InlineData("qwen35-0.8b-int8dyn-graphonly", "decoder_model_merged_quantized.onnx", 1024)]
    [InlineData("qwen3-tts-codepredictor-mobius", "model.onnx", 8)]
    public void RealInputsEmbedsExport_RecordsExternalEmbedding(string folder, string file, long hidden)
    {
        using var model = ModelReader.Load(Fixtures.Path("exports-modern", folder, file), new LoadOptions { RequireExternalData = false });
        var s = StructureRecognizer.Recognize(model).Structure!;
        Assert.Equal("inputs_embeds", s.ExternalEmbedding!.InputsEmbeds.Name);
        Assert.Equal(hidden, s.ExternalEmbedding.HiddenSize);
    }

    [Fact]
    public void InspectLayers_WithEmbeddingModel_ReportsItsGatherAsTheEmbedding()
    {
        using var dir = new TempFolder("split");
        var (embed, decoder, _) = Write(dir);
        var text = CliRunner.Run("inspect", decoder, "--layers", "--embedding-model", embed);
        Assert.Equal(0, text.ExitCode);
        Assert.Contains($"embedding     from {embed}: Gather: model.embed_tokens.weight [{Config.Dim}] -> inputs_embeds -> inputs_embeds [{Config.Dim}]", text.Stdout);
        var json = CliRunner.Run("inspect", decoder, "--layers", "--json", "--embedding-model", embed);
        Assert.Equal(0, json.ExitCode);
        var linked = System.Text.Json.JsonDocument.Parse(json.Stdout).RootElement.GetProperty("layers").GetProperty("externalEmbedding").GetProperty("linked");
        Assert.True(linked.GetProperty("hiddenSizeMatches").GetBoolean());
        Assert.Equal("model.embed_tokens.weight", linked.GetProperty("embedding").GetProperty("tokenTable").GetString());
        Assert.Equal(System.Text.Json.JsonValueKind.Null, linked.GetProperty("problem").ValueKind);
    }

    [Fact]
    public void InspectLayers_EmbeddingModelOfOtherWidth_ReportsMismatch()
    {
        using var dir = new TempFolder("split");
        var (_, decoder, _) = Write(dir);
        var other = SyntheticDecoder.Create(new DecoderConfig(dim: 32, hiddenDim: 88, layers: 1, heads: 2, kvHeads: 1, vocabSize: 256, maxSeqLen: 64), 7);
        using (var e = SplitEmbedding.BuildEmbeddingModel(other)) ModelWriter.Save(e, dir.Path("other.onnx"));
        var text = CliRunner.Run("inspect", decoder, "--layers", "--embedding-model", dir.Path("other.onnx"));
        Assert.Contains("MISMATCH: the token table is 32 wide, the decoder's 'inputs_embeds' is 64", text.Stdout);
    }

    [Fact]
    public void Inspect_EmbeddingModelWithoutLayers_IsAUsageError()
    {
        using var dir = new TempFolder("split");
        var (embed, decoder, _) = Write(dir);
        Assert.Equal(2, CliRunner.Run("inspect", decoder, "--embedding-model", embed).ExitCode);
    }
}
