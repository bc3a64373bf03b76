using OnnxOutlierTools.IO;
using OnnxOutlierTools.Tensors;
using OnnxOutlierTools.Tests.IO;

namespace OnnxOutlierTools.Tests.Cli;

public class ConvertCommandTests
{
    private static readonly string EmbeddedModel = Fixtures.Export("gpt2-ort-fused-fp32", "past.onnx");

    [Fact]
    public void Convert_EmbeddedToExternalToEmbedded_KeepsEveryTensor()
    {
        using var temp = new TempFolder();
        string external = temp.Path("external", "model.onnx");
        string embedded = temp.Path("embedded", "model.onnx");

        var toExternal = CliRunner.Run("convert", EmbeddedModel, "-o", external, "--external-data");
        Assert.True(toExternal.ExitCode == 0, toExternal.ToString());
        Assert.Matches(@"^wrote .*model\.onnx \([\d,]+ bytes\): \d+ tensors embedded, \d+ external \([\d,]+ bytes in model\.onnx\.data\)\r?\n$", toExternal.Stdout);
        Assert.Equal("", toExternal.Stderr);
        Assert.True(File.Exists(external + ".data"));

        var toEmbedded = CliRunner.Run("convert", external, "-o", embedded, "--embed");
        Assert.True(toEmbedded.ExitCode == 0, toEmbedded.ToString());
        Assert.Matches(@"^wrote .*: 27 tensors embedded, 0 external\r?\n$", toEmbedded.Stdout);
        Assert.Equal(["embedded/model.onnx", "external/model.onnx", "external/model.onnx.data"], temp.Files());

        using var original = ModelReader.Load(EmbeddedModel);
        using var middle = ModelReader.Load(external);
        using var back = ModelReader.Load(embedded);
        Assert.Contains(middle.Graph.Initializers, v => v.ConstValue!.Storage == TensorStorage.External);
        Assert.All(middle.Graph.Initializers, v => Assert.Equal(v.ConstValue!.ByteLength >= 1024, v.ConstValue.Storage == TensorStorage.External));
        Assert.All(back.Graph.Initializers, v => Assert.Equal(TensorStorage.Embedded, v.ConstValue!.Storage));
        AssertSameTensors(original, middle);
        AssertSameTensors(original, back);
        Assert.Equal(original.Graph.Nodes.Count, back.Graph.Nodes.Count);
    }

    [Fact]
    public void Convert_ExistingOutput_IsRefusedWithoutForceAndReplacedWithIt()
    {
        using var temp = new TempFolder();
        string output = temp.Path("out.onnx");
        File.WriteAllText(output, "an earlier result");

        var refused = CliRunner.Run("convert", EmbeddedModel, "-o", output);
        Assert.Equal(2, refused.ExitCode);
        Assert.Equal([$"error: {output}: already exists; add --force to replace it"], refused.StderrLines);
        Assert.Equal("an earlier result", File.ReadAllText(output));
        Assert.Equal(["out.onnx"], temp.Files());

        var forced = CliRunner.Run("convert", EmbeddedModel, "-o", output, "--force");
        Assert.True(forced.ExitCode == 0, forced.ToString());
        using var model = ModelReader.Load(output);
        Assert.Equal(27, model.Graph.Initializers.Count);
    }

    [Fact]
    public void Convert_ExistingDataFileOnly_IsRefusedWithoutForce()
    {
        using var temp = new TempFolder();
        string output = temp.Path("out.onnx");
        File.WriteAllText(output + ".data", "someone else's data");

        var refused = CliRunner.Run("convert", EmbeddedModel, "-o", output, "--external-data");
        Assert.Equal(2, refused.ExitCode);
        Assert.Contains("out.onnx.data: already exists", refused.Stderr);
        Assert.Equal("someone else's data", File.ReadAllText(output + ".data"));
        Assert.Equal(["out.onnx.data"], temp.Files());
    }

    [Fact]
    public void Convert_ExternalThresholdAndDataFile_AreHonoured()
    {
        using var temp = new TempFolder();
        string output = temp.Path("out.onnx");

        var result = CliRunner.Run("convert", EmbeddedModel, "-o", output, "--external-data", "--threshold", "0", "--data-file", "weights.bin");

        Assert.True(result.ExitCode == 0, result.ToString());
        Assert.Contains(": 0 tensors embedded, 27 external", result.Stdout);
        Assert.Equal(["out.onnx", "weights.bin"], temp.Files());
        using var model = ModelReader.Load(output);
        Assert.All(model.Graph.Initializers, v => Assert.Equal(TensorStorage.External, v.ConstValue!.Storage));
    }

    [Fact]
    public void Convert_DefaultLayout_PreservesExternalData()
    {
        using var temp = new TempFolder();
        string output = temp.Path("copy.onnx");

        var result = CliRunner.Run("convert", Fixtures.Export("llama-genai-gqa-fp32", "model.onnx"), "-o", output);

        Assert.True(result.ExitCode == 0, result.ToString());
        Assert.Contains(": 0 tensors embedded, 19 external (4,260,160 bytes in copy.onnx.data)", result.Stdout);
        using var original = ModelReader.Load(Fixtures.Export("llama-genai-gqa-fp32", "model.onnx"));
        using var copy = ModelReader.Load(output);
        AssertSameTensors(original, copy);
    }

    [Fact]
    public void Convert_OutputIsTheInput_RefusesAndLeavesItUnchanged()
    {
        using var temp = new TempFolder();
        string model = temp.CopyGqaModel();
        string data = temp.Path("model.onnx.data");
        string modelHash = TempFolder.Sha256(model), dataHash = TempFolder.Sha256(data);

        foreach (string[] args in new[]
        {
            new[] { "convert", model, "-o", model },
            ["convert", model, "-o", model, "--embed"],
            ["convert", model, "-o", Path.Combine(temp.FullPath, ".", "model.onnx"), "--external-data"],
            ["convert", model, "-o", data],
            ["convert", model, "-o", temp.Path("other.onnx"), "--external-data", "--data-file", "model.onnx.data"],
        })
        {
            var result = CliRunner.Run(args);
            Assert.True(result.ExitCode == 2, string.Join(" ", args) + "\n" + result);
            string line = Assert.Single(result.StderrLines);
            Assert.StartsWith("error: ", line);
            Assert.DoesNotContain("   at ", result.Stderr);
            Assert.Equal("", result.Stdout);
        }
        Assert.Equal(modelHash, TempFolder.Sha256(model));
        Assert.Equal(dataHash, TempFolder.Sha256(data));
        Assert.Equal(["model.onnx", "model.onnx.data"], temp.Files());
    }

    [Theory]
    [InlineData("under a file", "file.onnx/out.onnx", "cannot create the output folder: '")]
    [InlineData("a directory", "folder", "is a directory; convert -o names the .onnx file to write (for example ")]
    [InlineData("a path ending in /", "new/", "ends in a separator, so names a directory; convert -o names the .onnx file to write")]
    [InlineData("empty", "", "empty output path")]
    [InlineData("data file named like the model", "out.onnx", "is the model file's own name", "--external-data", "--data-file", "out.onnx")]
    [InlineData("data file in another folder", "out.onnx", "must be a plain file name", "--external-data", "--data-file", "../weights.bin")]
    public void Convert_BadOutput_ReportsOneLineErrorAndWritesNothing(string kind, string output, string problem, params string[] options)
    {
        using var temp = new TempFolder();
        File.WriteAllBytes(temp.Path("file.onnx"), [1, 2, 3]);
        Directory.CreateDirectory(temp.Path("folder"));
        string target = output.Length > 0 ? temp.Path(output) : "";
        string[] before = temp.Files();

        var result = CliRunner.Run(["convert", EmbeddedModel, "-o", target, .. options]);

        Assert.True(result.ExitCode == 2, kind + "\n" + result);
        string line = Assert.Single(result.StderrLines);
        Assert.StartsWith($"error: {(target.Length > 0 ? target : "''")}: ", line); // an empty name is shown quoted
        Assert.Contains(problem, line);
        Assert.DoesNotContain("   at ", result.Stderr);
        Assert.Equal("", result.Stdout);
        Assert.Equal(before, temp.Files());
        Assert.False(Directory.Exists(temp.Path("new")), "no folder is left behind");
    }

    [Fact]
    public void Convert_EmbedBeyondProtobufLimit_WarnsThatDataWentExternal()
    {
        using var temp = new TempFolder();
        string output = temp.Path("big.onnx");

        // The hidden --protobuf-limit stands in for the 2 GB limit.
        var result = CliRunner.Run("convert", EmbeddedModel, "-o", output, "--embed", "--protobuf-limit", "100000");

        Assert.True(result.ExitCode == 0, result.ToString());
        string warning = Assert.Single(result.StderrLines);
        Assert.StartsWith("warning: ", warning);
        Assert.Contains("--embed", warning);
        Assert.Contains("big.onnx.data", warning);
        Assert.True(File.Exists(output + ".data"));
        Assert.Matches(@"\d+ external", result.Stdout);
    }

    [Fact]
    public void Convert_EmbedAndExternalDataTogether_IsAUsageError()
    {
        using var temp = new TempFolder();
        string output = temp.Path("out", "x.onnx");

        var result = CliRunner.Run("convert", EmbeddedModel, "-o", output, "--embed", "--external-data");

        Assert.Equal(2, result.ExitCode);
        Assert.Contains("--external-data and --embed cannot be used together", result.Stderr);
        Assert.Equal("", result.Stdout);
        Assert.Empty(temp.Files());
    }

    [Theory]
    [InlineData("--threshold", "100")]
    [InlineData("--external-data", "--threshold", "-1")]
    [InlineData("--external-data", "--threshold", "many")]
    [InlineData("--bogus")]
    public void Convert_BadOptions_AreUsageErrors(params string[] options)
    {
        using var temp = new TempFolder();
        string output = temp.Path("x.onnx");

        var result = CliRunner.Run(["convert", EmbeddedModel, "-o", output, .. options]);

        Assert.True(result.ExitCode == 2, result.ToString());
        Assert.StartsWith("error: ", result.StderrLines[0]);
        Assert.DoesNotContain("   at ", result.Stderr);
        Assert.Empty(temp.Files());
    }

    [Fact]
    public void Convert_WithoutOutput_IsAUsageError()
    {
        var result = CliRunner.Run("convert", EmbeddedModel);

        Assert.Equal(2, result.ExitCode);
        Assert.Contains("--output", result.Stderr);
    }

    private static void AssertSameTensors(OnnxOutlierTools.Ir.Model expected, OnnxOutlierTools.Ir.Model actual)
    {
        var actualByName = actual.Graph.Initializers.ToDictionary(v => v.Name);
        Assert.Equal(expected.Graph.Initializers.Count, actualByName.Count);
        foreach (var v in expected.Graph.Initializers)
        {
            var a = actualByName[v.Name].ConstValue!;
            Assert.Equal(v.ConstValue!.DataType, a.DataType);
            Assert.Equal(v.ConstValue.Dims, a.Dims);
            Assert.True(v.ConstValue.Bytes.SequenceEqual(a.Bytes), $"tensor '{v.Name}' differs");
        }
    }
}
