using Google.Protobuf;
using Onnx.Protobuf;
using OnnxOutlierTools.Tests.IO;

namespace OnnxOutlierTools.Tests.Cli;

/// <summary>Every kind of bad input ends the same way: exit code 2, exactly one stderr line
/// <c>error: &lt;path&gt;: &lt;problem&gt;</c>, no stack trace, nothing written.</summary>
public class BadInputTests
{
    /// <summary>Builds a bad input in <paramref name="temp"/> and returns the model path to pass.</summary>
    private static readonly Dictionary<string, Func<TempFolder, string>> Cases = new()
    {
        ["missing file"] = t => t.Path("absent.onnx"),
        ["directory"] = t => Directory.CreateDirectory(t.Path("folder.onnx")).FullName,
        ["empty file"] = t => Write(t.Path("empty.onnx"), []),
        ["random bytes"] = t => Write(t.Path("random.onnx"), RandomBytes(4096, seed: 7)),
        ["truncated model"] = t =>
        {
            string model = t.CopyGqaModel();
            byte[] bytes = File.ReadAllBytes(model);
            return Write(model, bytes[..(bytes.Length * 2 / 3)]);
        },
        ["missing external data file"] = t => t.CopyGqaModel(withData: false),
        ["too-short external data file"] = t =>
        {
            string model = t.CopyGqaModel();
            string data = t.Path("model.onnx.data");
            Write(data, File.ReadAllBytes(data)[..1_000_000]);
            return model;
        },
        ["external location escaping the model folder"] = t =>
        {
            // The target exists and is a valid data file: only its location is wrong.
            t.CopyGqaModel(withData: true);
            string model = t.CopyGqaModel(withData: false, folder: "sub");
            RewriteLocations(model, "../model.onnx.data");
            return model;
        },
        ["absolute external location"] = t =>
        {
            string model = t.CopyGqaModel(withData: true);
            RewriteLocations(model, t.Path("model.onnx.data"));
            return model;
        },
    };

    /// <summary>inspect reads no tensor data: an absent or short data file is reported, not an error.</summary>
    private static readonly HashSet<string> InspectAccepts = ["missing external data file", "too-short external data file"];

    public static TheoryData<string> InspectCases => new(Cases.Keys.Where(k => !InspectAccepts.Contains(k)));
    public static TheoryData<string> ConvertCases => new(Cases.Keys);

    [Theory]
    [MemberData(nameof(InspectCases))]
    public void Inspect_BadInput_ReportsOneLineErrorAndExits2(string kind)
    {
        using var temp = new TempFolder();
        string model = Cases[kind](temp);
        string[] before = temp.Files();

        foreach (var args in new[] { new[] { "inspect", model }, ["inspect", "--json", model] })
        {
            var result = CliRunner.Run(args);
            AssertOneLineError(result, model);
            Assert.Equal("", result.Stdout);
        }
        Assert.Equal(before, temp.Files());
    }

    [Theory]
    [MemberData(nameof(ConvertCases))]
    public void Convert_BadInput_ReportsOneLineErrorAndWritesNothing(string kind)
    {
        using var temp = new TempFolder();
        string model = Cases[kind](temp);
        string[] before = temp.Files();
        string outFolder = temp.Path("out");

        foreach (string layout in new[] { "--embed", "--external-data" })
        {
            var result = CliRunner.Run("convert", model, "-o", Path.Combine(outFolder, "converted.onnx"), layout);
            AssertOneLineError(result, model);
            Assert.Equal("", result.Stdout);
        }
        Assert.False(Directory.Exists(outFolder));
        Assert.Equal(before, temp.Files());
    }

    [Fact]
    public void Inspect_MissingExternalDataFile_StillSucceeds()
    {
        using var temp = new TempFolder();
        var result = CliRunner.Run("inspect", Cases["missing external data file"](temp));

        Assert.True(result.ExitCode == 0, result.ToString());
    }

    [Theory]
    [InlineData("missing external data file", "external data file 'model.onnx.data' not found")]
    [InlineData("too-short external data file", "external data file 'model.onnx.data' is too short")]
    [InlineData("external location escaping the model folder", "external data location '../model.onnx.data' escapes the model folder")]
    [InlineData("absolute external location", "is an absolute path")]
    [InlineData("empty file", "empty file")]
    [InlineData("directory", "is a directory")]
    [InlineData("missing file", "file not found")]
    [InlineData("random bytes", "not a valid ONNX protobuf")]
    [InlineData("truncated model", "not a valid ONNX protobuf")]
    public void Convert_BadInput_NamesTheProblem(string kind, string problem)
    {
        using var temp = new TempFolder();
        string model = Cases[kind](temp);

        var result = CliRunner.Run("convert", model, "-o", temp.Path("out.onnx"));

        Assert.Equal($"error: {model}: ", result.StderrLines.Single()[..(model.Length + 9)]);
        Assert.Contains(problem, result.Stderr);
    }

    [Fact]
    public void Verbose_BadInput_AddsTheStackTrace()
    {
        using var temp = new TempFolder();
        string model = Cases["truncated model"](temp);

        var result = CliRunner.Run("inspect", model, "--verbose");

        Assert.Equal(2, result.ExitCode);
        Assert.StartsWith($"error: {model}: ", result.StderrLines[0]);
        Assert.Contains("   at ", result.Stderr);
        Assert.Contains("ModelLoadException", result.Stderr);
    }

    [Fact]
    public void Error_PathWithLineBreak_StaysOnOneLine()
    {
        using var temp = new TempFolder();
        string model = temp.Path("two\nlines.onnx");

        var result = CliRunner.Run("inspect", model);

        Assert.Equal(2, result.ExitCode);
        Assert.Contains("two\\nlines.onnx", Assert.Single(result.StderrLines));
    }

    private static void AssertOneLineError(CliResult result, string model)
    {
        Assert.True(result.ExitCode == 2, result.ToString());
        string line = Assert.Single(result.StderrLines);
        Assert.StartsWith("error: ", line);
        Assert.Contains(model, line);
        Assert.DoesNotContain("   at ", result.Stderr);
    }

    private static string Write(string path, byte[] bytes)
    {
        File.WriteAllBytes(path, bytes);
        return path;
    }

    private static byte[] RandomBytes(int length, int seed)
    {
        var bytes = new byte[length];
        new Random(seed).NextBytes(bytes);
        return bytes;
    }

    private static void RewriteLocations(string modelPath, string location)
    {
        var proto = ModelProto.Parser.ParseFrom(File.ReadAllBytes(modelPath));
        foreach (var tensor in proto.Graph.Initializer.Where(t => t.DataLocation == TensorProto.Types.DataLocation.External))
            foreach (var entry in tensor.ExternalData.Where(e => e.Key == "location"))
                entry.Value = location;
        File.WriteAllBytes(modelPath, proto.ToByteArray());
    }
}
