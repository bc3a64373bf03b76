using System.Text.Json;
using OnnxOutlierTools.Inspection;
using OnnxOutlierTools.IO;
using OnnxOutlierTools.Ir;
using OnnxOutlierTools.Tensors;

namespace OnnxOutlierTools.Tests.Cli;

/// <summary>Every JSON output goes through <see cref="JsonOutput.Options"/>: the same field prints the same
/// in <c>inspect --json</c> and <c>inspect --json --layers</c>, names come out as the model spells them,
/// control and bidi characters stay escaped.</summary>
public sealed class JsonOutputTests : IDisposable
{
    private readonly TempFolder _temp = new("json-output");

    [Fact]
    public void InspectJson_WithAndWithoutLayers_PrintTheSameFieldTheSameWay()
    {
        // attention_mask is [batch_size, "past_sequence_length + sequence_length"].
        string path = Fixtures.Export("llama-torch-past", "model.onnx");
        var plain = CliRunner.Run("inspect", "--json", path);
        var layers = CliRunner.Run("inspect", "--json", "--layers", path);
        Assert.True(plain.ExitCode == 0, plain.ToString());
        Assert.True(layers.ExitCode == 0, layers.ToString());

        const string field = "\"past_sequence_length + sequence_length\"";
        Assert.Contains(field, plain.Stdout);
        Assert.Contains(field, layers.Stdout);
        Assert.DoesNotContain("\\u002B", plain.Stdout);
        Assert.DoesNotContain("\\u002B", layers.Stdout);
        // The summary part of --layers is the plain output, byte for byte, with "layers" appended.
        string summary = plain.Stdout.TrimEnd()[..^1].TrimEnd();
        Assert.StartsWith(summary + "," + Environment.NewLine + "  \"layers\": {", layers.Stdout);
        using var doc = JsonDocument.Parse(layers.Stdout);
        Assert.True(doc.RootElement.GetProperty("layers").GetProperty("recognized").GetBoolean());
    }

    [Fact]
    public void InspectJson_NamesKeepPunctuationAndLetters_ControlAndBidiCharactersEscaped()
    {
        const string name = "x+1 <Größe> 'q'\u001b[2J\u202e";
        var b = new GraphBuilder();
        var x = b.Input(name, TensorDataType.Float, "n + 1");
        b.Output(b.Op("Relu", x), TensorDataType.Float, "n + 1");
        using var model = b.ToModel();
        string path = _temp.Path("model.onnx");
        ModelWriter.Save(model, path, new SaveOptions { Durable = false });

        var result = CliRunner.Run("inspect", "--json", path);
        Assert.True(result.ExitCode == 0, result.ToString());
        string line = result.Stdout.Split('\n').First(l => l.Contains("Gr"));
        Assert.True(line.Contains("\"x+1 <Größe> 'q'\\u001B[2J\\u202E\""), line);
        Assert.Contains("\"n + 1\"", result.Stdout);
        Assert.DoesNotContain('\u001b', result.Stdout);
        Assert.DoesNotContain('\u202e', result.Stdout);
        using var doc = JsonDocument.Parse(result.Stdout);
        Assert.Equal(name, doc.RootElement.GetProperty("inputs")[0].GetProperty("name").GetString());
    }

    [Fact]
    public void Options_AreSharedByEveryJsonOutput()
    {
        Assert.Same(JsonOutput.Options, ModelSummary.JsonOptions);
        Assert.Same(JsonOutput.Options.Encoder, JsonOutput.WriterOptions.Encoder);
        string config = OnnxOutlierTools.Import.HfConfigJson.Create(OnnxOutlierTools.Import.SyntheticDecoder.TinyConfig, useCache: false);
        Assert.Equal(64, JsonDocument.Parse(config).RootElement.GetProperty("hidden_size").GetInt32());
    }

    [Theory]
    [InlineData("a+b <c> & 'd' Größe", "\"a+b <c> & 'd' Größe\"")]
    [InlineData("rtl\u202eltr\u2066iso\u200bzw\ufeffbom", "\"rtl\\u202Eltr\\u2066iso\\u200Bzw\\uFEFFbom\"")]
    [InlineData("tag\U000E0041 line\u2028para\u2029", "\"tag\\uDB40\\uDC41 line\\u2028para\\u2029\"")]
    [InlineData("esc\u001b nl\n", "\"esc\\u001B nl\\n\"")]
    public void Encoder_Utf16AndUtf8Paths_EscapeTheSameCharacters(string value, string expected)
    {
        Assert.Equal(expected, JsonSerializer.Serialize(value, JsonOutput.Options));
        using var stream = new MemoryStream();
        using (var writer = new Utf8JsonWriter(stream, JsonOutput.WriterOptions))
            writer.WriteStringValue(System.Text.Encoding.UTF8.GetBytes(value));
        Assert.Equal(expected, System.Text.Encoding.UTF8.GetString(stream.ToArray()));
        Assert.Equal(value, JsonSerializer.Deserialize<string>(expected));
    }

    public void Dispose() => _temp.Dispose();
}
