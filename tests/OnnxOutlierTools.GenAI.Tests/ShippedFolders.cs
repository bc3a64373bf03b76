using OnnxOutlierTools.Tests;
using OnnxOutlierTools.Tests.Cli;

namespace OnnxOutlierTools.GenAI.Tests;

/// <summary>Model folders made by the CLI in-process, as a user would (mitigate, import), under one temp folder.</summary>
public sealed class ShippedFolders : IDisposable
{
    private readonly TempFolder _temp = new("genai-shipped");

    /// <summary>The exact mitigations each tested folder gets, by name (all of them on the calibration sample).</summary>
    public static readonly IReadOnlyDictionary<string, string[]> ExactRecipes = new Dictionary<string, string[]>
    {
        ["fold-norms"] = ["--fold-norms"],
        ["smooth-0.5"] = ["--smooth", "0.5"],
        ["sink-bias"] = ["--sink-bias"],
    };

    public string Path(string name) => _temp.Path(name);

    /// <summary>A writable copy of a folder.</summary>
    public string Copy(string source, string name) => GenAiFolders.CopyFolder(source, _temp.Folder(name));

    /// <summary><c>mitigate FOLDER --text sample -o OUT ARGS</c> in-process; throws with the CLI's output when it fails.</summary>
    public string Mitigate(string sourceFolder, string name, params string[] args)
    {
        string output = _temp.Path(name);
        Run(["mitigate", sourceFolder, "--text", Fixtures.Path("text", "tinystories-sample.txt"), "--seq-len", "64", "--max-tokens", "128", "--proof-windows", "1",
            "--no-compare", "-o", output, .. args]);
        return output;
    }

    /// <summary><c>import-llama2c stories260K.bin --flavour genai-gqa -o OUT</c> in-process.</summary>
    public string ImportStories(string name)
    {
        string output = _temp.Path(name);
        Run(["import-llama2c", OnnxOutlierTools.Tests.Import.Stories260K.CheckpointPath, "-o", output, "--flavour", "genai-gqa"]);
        return output;
    }

    /// <summary>The folder with its model converted to fp16 (<c>convert --fp16</c>, external data as model.onnx.data) and
    /// the companions (genai_config.json, tokenizer files) copied beside it.</summary>
    public string ConvertFp16(string sourceFolder, string name, bool fp16Io = false)
    {
        string output = _temp.Folder(name);
        foreach (string file in Directory.EnumerateFiles(sourceFolder).Where(f => !System.IO.Path.GetFileName(f).StartsWith("model.onnx", StringComparison.Ordinal)))
            File.Copy(file, System.IO.Path.Combine(output, System.IO.Path.GetFileName(file)));
        Run(["convert", System.IO.Path.Combine(sourceFolder, "model.onnx"), "-o", System.IO.Path.Combine(output, "model.onnx"), "--fp16",
            "--external-data", "--data-file", "model.onnx.data", .. (fp16Io ? new[] { "--fp16-io" } : [])]);
        return output;
    }

    public static void Run(params string[] args)
    {
        var result = CliRunner.Run(args);
        if (result.ExitCode != 0) throw new InvalidOperationException($"onnx-outliers {string.Join(" ", args)}: {result}");
    }

    public void Dispose() => _temp.Dispose();
}
