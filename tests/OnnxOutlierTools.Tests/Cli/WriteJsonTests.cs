using System.Text.Json;

namespace OnnxOutlierTools.Tests.Cli;

/// <summary><c>convert --json</c> and <c>import-llama2c --json</c>: one JSON object on stdout that says what was
/// written, with the same property names for both commands.</summary>
public class WriteJsonTests
{
    private static readonly string[] Properties =
        ["schemaVersion", "command", "input", "model", "modelBytes", "dataFile", "dataFileBytes", "config", "layout",
         "tensors", "forcedExternal", "flavour", "weightType", "warnings", "target"];

    [Fact]
    public void ConvertJson_External_DescribesTheFilesWritten()
    {
        using var temp = new TempFolder("convert-json");
        string input = Fixtures.Export("gpt2-ort-fused-fp32", "past.onnx");
        string output = temp.Path("out.onnx");

        var result = CliRunner.Run("convert", input, "-o", output, "--external-data", "--json");

        Assert.True(result.ExitCode == 0, result.ToString());
        Assert.Equal("", result.Stderr);
        var json = JsonDocument.Parse(result.Stdout).RootElement;
        Assert.Equal(Properties, json.EnumerateObject().Select(p => p.Name));
        Assert.Equal(1, json.GetProperty("schemaVersion").GetInt32());
        Assert.Equal("convert", json.GetProperty("command").GetString());
        Assert.Equal(input, json.GetProperty("input").GetString());
        Assert.Equal(output, json.GetProperty("model").GetString());
        Assert.Equal(new FileInfo(output).Length, json.GetProperty("modelBytes").GetInt64());
        Assert.Equal(output + ".data", json.GetProperty("dataFile").GetString());
        Assert.Equal(new FileInfo(output + ".data").Length, json.GetProperty("dataFileBytes").GetInt64());
        Assert.Equal(JsonValueKind.Null, json.GetProperty("config").ValueKind);
        Assert.Equal("external", json.GetProperty("layout").GetString());
        var tensors = json.GetProperty("tensors");
        using var written = OnnxOutlierTools.IO.ModelReader.Load(output);
        int external = written.Graph.Initializers.Count(v => v.ConstValue!.Storage == OnnxOutlierTools.Tensors.TensorStorage.External);
        Assert.True(external > 0);
        Assert.Equal(external, tensors.GetProperty("external").GetInt32());
        Assert.Equal(27 - external, tensors.GetProperty("embedded").GetInt32());
        Assert.Equal(written.Graph.Initializers.Where(v => v.ConstValue!.Storage == OnnxOutlierTools.Tensors.TensorStorage.External).Sum(v => v.ConstValue!.ByteLength),
            tensors.GetProperty("externalBytes").GetInt64());
        Assert.False(json.GetProperty("forcedExternal").GetBoolean());
        Assert.Empty(json.GetProperty("warnings").EnumerateArray());
    }

    [Fact]
    public void ConvertJson_Warning_IsInTheJsonAndOnStderr()
    {
        using var temp = new TempFolder("convert-json");
        var result = CliRunner.Run("convert", Fixtures.Export("gpt2-ort-fused-fp32", "past.onnx"), "-o", temp.Path("out.onnx"),
            "--embed", "--protobuf-limit", "100000", "--json");

        Assert.True(result.ExitCode == 0, result.ToString());
        var json = JsonDocument.Parse(result.Stdout).RootElement;
        Assert.True(json.GetProperty("forcedExternal").GetBoolean());
        string warning = Assert.Single(json.GetProperty("warnings").EnumerateArray()).GetString()!;
        Assert.Contains("protobuf limit", warning);
        Assert.Equal(["warning: " + warning], result.StderrLines);
    }

    [Fact]
    public void ImportJson_DescribesTheFolderWritten()
    {
        using var temp = new TempFolder("import-json");
        string checkpoint = Fixtures.Path("llama2c", "stories260K.bin");

        var result = CliRunner.Run("import-llama2c", checkpoint, "-o", temp.FullPath, "--flavour", "genai-gqa", "--fp16", "--json");

        Assert.True(result.ExitCode == 0, result.ToString());
        Assert.Equal("", result.Stderr);
        var json = JsonDocument.Parse(result.Stdout).RootElement;
        Assert.Equal(Properties, json.EnumerateObject().Select(p => p.Name));
        Assert.Equal("import-llama2c", json.GetProperty("command").GetString());
        Assert.Equal(checkpoint, json.GetProperty("input").GetString());
        Assert.Equal(temp.Path("model.onnx"), json.GetProperty("model").GetString());
        Assert.Equal(temp.Path("model.onnx.data"), json.GetProperty("dataFile").GetString());
        Assert.Equal(new FileInfo(temp.Path("model.onnx.data")).Length, json.GetProperty("dataFileBytes").GetInt64());
        Assert.Equal(temp.Path("config.json"), json.GetProperty("config").GetString());
        Assert.Equal("genai-gqa", json.GetProperty("flavour").GetString());
        Assert.Equal("float16", json.GetProperty("weightType").GetString());
        using var written = OnnxOutlierTools.IO.ModelReader.Load(temp.Path("model.onnx"));
        var tensors = json.GetProperty("tensors");
        Assert.Equal(written.Graph.Initializers.Count, tensors.GetProperty("embedded").GetInt32() + tensors.GetProperty("external").GetInt32());
        Assert.True(tensors.GetProperty("external").GetInt32() > 0);
    }

    [Fact]
    public void ImportText_IsOneLineNamingTheFiles()
    {
        using var temp = new TempFolder("import-text");
        var result = CliRunner.Run("import-llama2c", Fixtures.Path("llama2c", "stories260K.bin"), "-o", temp.FullPath);

        Assert.True(result.ExitCode == 0, result.ToString());
        Assert.Matches($@"^wrote {System.Text.RegularExpressions.Regex.Escape(temp.Path("model.onnx"))} \([\d,]+ bytes\): \d+ tensors embedded, \d+ external \([\d,]+ bytes in model\.onnx\.data\), config\.json\r?\n$", result.Stdout);
    }
}
