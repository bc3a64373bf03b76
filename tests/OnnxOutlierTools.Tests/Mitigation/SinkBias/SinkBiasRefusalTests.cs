using OnnxOutlierTools.Analysis;
using OnnxOutlierTools.Import;
using OnnxOutlierTools.IO;
using OnnxOutlierTools.Mitigation.SinkBias;
using OnnxOutlierTools.Tests.Import;

namespace OnnxOutlierTools.Tests.Mitigation.SinkBias;

/// <summary>Models the sink bias cannot rewrite get one line naming the model and the problem (SinkBiasException, which
/// the CLI maps to exit 2); the prefix definitions parse and order as documented.</summary>
public sealed class SinkBiasRefusalTests
{
    private static SinkBiasException Refusal(string path)
    {
        using var model = ModelReader.Load(path, new LoadOptions { RequireExternalData = false });
        var structure = SinkBiasHarness.Recognize(model, path);
        return Assert.Throws<SinkBiasException>(() => SinkSites.Find(structure, path));
    }

    [Fact]
    public void MergedIfDecoder_IsRefused()
    {
        using var temp = new TempFolder("sink-merged");
        string path = temp.Path("merged.onnx");
        using (var merged = MergedDecoder.Build(Stories260K.Weights)) ModelWriter.Save(merged, path, new SaveOptions { Durable = false });
        var e = Refusal(path);
        Assert.Contains("merged decoder", e.Message);
        Assert.Contains(path, e.Message);
        Assert.DoesNotContain('\n', e.Message);
    }

    [Theory]
    [InlineData("gpt2-torch-past", "gpt2_past.onnx", "stacked")]
    [InlineData("gpt2-ort-fused-fp32", "past.onnx", "stacked")]
    [InlineData("llama-mobius-opset24", "model.onnx", "is not a [batch, heads, length, head_size] tensor")]
    public void UnsupportedCacheOrAttentionForm_IsRefused(string flavour, string file, string expected)
    {
        var e = Refusal(Fixtures.Export(flavour, file));
        Assert.Contains(expected, e.Message);
        Assert.DoesNotContain('\n', e.Message);
    }

    [Fact]
    public void NoRecognizedAttention_IsRefused()
    {
        using var temp = new TempFolder("sink-none");
        string path = temp.Path("model.onnx");
        using (var m = LlamaOnnxBuilder.Build(Stories260K.Weights)) ModelWriter.Save(m, path, new SaveOptions { Durable = false });
        using var model = ModelReader.Load(path);
        var structure = SinkBiasHarness.Recognize(model, path);
        // The same structure with its attention roles taken away: what a model with only opaque token mixers reports.
        var none = structure with { Blocks = structure.Blocks.Select(b => b with { Attention = null }).ToList() };
        var e = Assert.Throws<SinkBiasException>(() => SinkSites.Find(none, path));
        Assert.Contains("no recognized attention", e.Message);
    }

    [Fact]
    public void Prefix_ParseAndAuto_FollowTheDocumentedOrder()
    {
        Assert.Equal([1, 13, 29889], SinkPrefix.Parse("1, 13,29889").TokenIds);
        Assert.Throws<SinkBiasException>(() => SinkPrefix.Parse("1,x"));
        Assert.Throws<SinkBiasException>(() => SinkPrefix.Parse("-3"));
        Assert.Equal([1], SinkPrefix.Bos(1).TokenIds);

        static MassiveActivationToken Carrier(int id, int count, double max, params int[] positions) => new()
        {
            TokenId = id, Category = positions.All(p => p == 0) ? TokenCategory.FirstPosition : TokenCategory.Delimiter,
            Positions = positions, Count = count, Channels = [66], MaxAbs = max,
        };
        var carriers = new[]
        {
            Carrier(1, 40, 900, 0),          // BOS itself: first, once
            Carrier(7, 9, 300, 0),           // only ever the window's first token: BOS's role, not repeated
            Carrier(29889, 12, 500, 5, 17),  // "."
            Carrier(13, 12, 650, 9),         // "\n": same count, larger max -> before "."
            Carrier(11, 3, 100, 4),          // ","
            Carrier(2, 3, 100, 8),           // same count and max as "," -> smaller id first
        };
        var auto = SinkPrefix.Auto(1, carriers);
        Assert.Equal([1, 13, 29889, 2], auto.TokenIds);
        Assert.Equal("auto", auto.Source);
        Assert.Equal([1, 13], SinkPrefix.Auto(1, carriers, maxTokens: 1).TokenIds);
    }
}

public sealed class SinkCompanionsTests
{
    [Fact]
    public void GenAiConfig_ShareBufferOff_LengthsReducedByThePrefix()
    {
        string json = File.ReadAllText(Fixtures.Export("llama-genai-mha-fp16", "genai_config.json"));
        var before = System.Text.Json.Nodes.JsonNode.Parse(json)!;
        var after = System.Text.Json.Nodes.JsonNode.Parse(SinkCompanions.UpdateGenAiConfig(json, 2))!;
        Assert.False(after["search"]!["past_present_share_buffer"]!.GetValue<bool>());
        Assert.Equal(before["model"]!["context_length"]!.GetValue<long>() - 2, after["model"]!["context_length"]!.GetValue<long>());
        Assert.Equal(before["model"]!["decoder"]!.ToJsonString(), after["model"]!["decoder"]!.ToJsonString());
        var e = Assert.Throws<SinkBiasException>(() => SinkCompanions.UpdateGenAiConfig("[1", 1));
        Assert.StartsWith("genai_config.json: not valid JSON", e.Message);
    }
}
