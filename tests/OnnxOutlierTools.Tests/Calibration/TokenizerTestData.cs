using System.Reflection;
using System.Text.Json;

namespace OnnxOutlierTools.Tests.Calibration;

/// <summary>The committed reference files under tests/OnnxOutlierTools.Tests/Calibration/Data (see its README)
/// and the r50k_base.tiktoken file from the Microsoft.ML.Tokenizers.Data.R50kBase package.</summary>
internal static class TokenizerTestData
{
    private static readonly Lazy<string> Folder = new(() =>
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            string candidate = System.IO.Path.Combine(dir.FullName, "tests", "OnnxOutlierTools.Tests", "Calibration", "Data");
            if (Directory.Exists(candidate)) return candidate;
        }
        throw new InvalidOperationException("tests/OnnxOutlierTools.Tests/Calibration/Data not found above " + AppContext.BaseDirectory);
    });

    public static string Path(string file) => System.IO.Path.Combine(Folder.Value, file);

    // Loaded once per test run and shared by the test classes (a Llama 2 tokenizer.json takes about a second to load).
    private static readonly Lazy<OnnxOutlierTools.Calibration.Text.TextTokenizer> LlamaLazy = new(() => OnnxOutlierTools.Calibration.Text.TokenizerLocator.LoadFile(Fixtures.Export("llama-genai-gqa-fp32", "tokenizer.json")));
    private static readonly Lazy<OnnxOutlierTools.Calibration.Text.TextTokenizer> Gpt2Lazy = new(() => OnnxOutlierTools.Calibration.Text.TokenizerLocator.LoadFile(Fixtures.Export("gpt2-ort-fused-fp32", "tokenizer.json")));
    private static readonly Lazy<OnnxOutlierTools.Calibration.Text.TextTokenizer> MiniLmLazy = new(() => OnnxOutlierTools.Calibration.Text.TokenizerLocator.LoadFile(MiniLm.VocabPath));
    private static readonly Lazy<OnnxOutlierTools.Calibration.Text.TextTokenizer> R50kLazy = new(() => OnnxOutlierTools.Calibration.Text.TokenizerLocator.LoadFile(R50kBasePath));

    /// <summary>The GQA fixture's tokenizer.json (Llama 2's).</summary>
    public static OnnxOutlierTools.Calibration.Text.TextTokenizer Llama => LlamaLazy.Value;
    /// <summary>The fused GPT-2 fixture's tokenizer.json.</summary>
    public static OnnxOutlierTools.Calibration.Text.TextTokenizer Gpt2 => Gpt2Lazy.Value;
    /// <summary>MiniLM's vocab.txt.</summary>
    public static OnnxOutlierTools.Calibration.Text.TextTokenizer MiniLmVocab => MiniLmLazy.Value;
    public static OnnxOutlierTools.Calibration.Text.TextTokenizer R50kBase => R50kLazy.Value;

    public sealed record Case(string Text, int[] Ids, int[]? IdsWithSpecials);

    public static IReadOnlyList<Case> Cases(string file)
    {
        using var doc = JsonDocument.Parse(File.ReadAllBytes(Path(file)));
        return doc.RootElement.GetProperty("cases").EnumerateArray().Select(c => new Case(
            c.GetProperty("text").GetString()!,
            c.GetProperty("ids").EnumerateArray().Select(e => e.GetInt32()).ToArray(),
            c.TryGetProperty("ids_with_specials", out var w) ? w.EnumerateArray().Select(e => e.GetInt32()).ToArray() : null)).ToArray();
    }

    private const string R50kVersion = "3.0.0";
    private static readonly Lazy<string> R50k = new(ExtractR50k);

    /// <summary>r50k_base.tiktoken (GPT-2's ranks) in tiktoken's file format ("base64-token rank" per line), written once
    /// into a temp folder from the package's embedded resource (Microsoft.ML.Tokenizers' compact form of the same
    /// file: a "Capacity: N" line, then one base64 token per line in rank order).</summary>
    public static string R50kBasePath => R50k.Value;

    private static string ExtractR50k()
    {
        string root = typeof(TokenizerTestData).Assembly.GetCustomAttributes<AssemblyMetadataAttribute>()
            .First(a => a.Key == "NuGetPackageRoot").Value ?? throw new InvalidOperationException("NuGetPackageRoot not recorded at build time");
        string dll = System.IO.Path.Combine(root, "microsoft.ml.tokenizers.data.r50kbase", R50kVersion, "lib", "net8.0", "Microsoft.ML.Tokenizers.Data.R50kBase.dll");
        if (!File.Exists(dll)) throw new FileNotFoundException($"Microsoft.ML.Tokenizers.Data.R50kBase {R50kVersion} is not in the NuGet cache (dotnet restore downloads it)", dll);
        var assembly = Assembly.LoadFile(dll);
        string resource = assembly.GetManifestResourceNames().Single(n => n.EndsWith("r50k_base.tiktoken.deflate", StringComparison.Ordinal));
        string folder = System.IO.Path.Combine(System.IO.Path.GetTempPath(), $"onnx-outliers-r50k-{R50kVersion}");
        Directory.CreateDirectory(folder);
        string target = System.IO.Path.Combine(folder, "r50k_base.tiktoken");
        if (File.Exists(target) && new FileInfo(target).Length > 0) return target;
        string temp = target + $".{Environment.ProcessId}.tmp";
        using (var input = assembly.GetManifestResourceStream(resource)!)
        using (var inflate = new System.IO.Compression.DeflateStream(input, System.IO.Compression.CompressionMode.Decompress))
        using (var reader = new StreamReader(inflate))
        using (var output = new StreamWriter(temp))
        {
            string header = reader.ReadLine()!;
            if (!header.StartsWith("Capacity:", StringComparison.Ordinal)) throw new InvalidDataException($"{resource}: unexpected first line {header}");
            int rank = 0;
            for (string? line = reader.ReadLine(); line is not null; line = reader.ReadLine())
                if (line.Length > 0) output.Write($"{line} {rank++}\n");
        }
        File.Move(temp, target, overwrite: true);
        return target;
    }
}
