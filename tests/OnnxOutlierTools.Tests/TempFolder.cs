using System.Security.Cryptography;

namespace OnnxOutlierTools.Tests;

/// <summary>A fresh folder under the system temp directory, deleted (with its contents) on dispose.</summary>
public sealed class TempFolder : IDisposable
{
    public TempFolder(string hint = "test")
    {
        FullPath = System.IO.Path.Combine(System.IO.Path.GetTempPath(), "onnx-outliers-tests", $"{hint}-{Guid.NewGuid():N}");
        Directory.CreateDirectory(FullPath);
    }

    public string FullPath { get; }

    public string Path(params string[] parts) => System.IO.Path.Combine([FullPath, .. parts]);

    /// <summary>A new empty subfolder.</summary>
    public string Folder(string name) => Directory.CreateDirectory(Path(name)).FullName;

    /// <summary>Copies a fixture file (a plain, writable copy: the fixtures themselves are read-only).</summary>
    public string CopyFixture(string flavour, string file, string? destination = null)
    {
        string target = Path(destination ?? file);
        Directory.CreateDirectory(System.IO.Path.GetDirectoryName(target)!);
        File.WriteAllBytes(target, File.ReadAllBytes(Fixtures.Export(flavour, file)));
        return target;
    }

    /// <summary>The GQA fixture (model.onnx, and model.onnx.data when <paramref name="withData"/>) in <paramref name="folder"/>.</summary>
    public string CopyGqaModel(bool withData = true, string folder = "")
    {
        string model = CopyFixture("llama-genai-gqa-fp32", "model.onnx", System.IO.Path.Combine(folder, "model.onnx"));
        if (withData) CopyFixture("llama-genai-gqa-fp32", "model.onnx.data", System.IO.Path.Combine(folder, "model.onnx.data"));
        return model;
    }

    public static string Sha256(string path) => Convert.ToHexString(SHA256.HashData(File.ReadAllBytes(path)));

    /// <summary>Names of all files below the folder, relative to it, sorted.</summary>
    public string[] Files() => Directory.EnumerateFiles(FullPath, "*", SearchOption.AllDirectories)
        .Select(f => System.IO.Path.GetRelativePath(FullPath, f)).Order(StringComparer.Ordinal).ToArray();

    public void Dispose()
    {
        try { if (Directory.Exists(FullPath)) Directory.Delete(FullPath, recursive: true); }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
    }
}
