using System.Security.Cryptography;

namespace OnnxOutlierTools.Tests.IO;

/// <summary>A fresh folder under the system temp folder, deleted on dispose.</summary>
public sealed class TempDirectory : IDisposable
{
    public TempDirectory() => Root = Directory.CreateTempSubdirectory("onnx-outliers-test-").FullName;

    public string Root { get; }

    public string PathOf(params string[] parts) => Path.Combine([Root, .. parts]);

    /// <summary>Copies a fixture file (a plain, writable copy: the fixtures themselves are read-only).</summary>
    public string CopyFixture(string flavour, string file, string? destination = null)
    {
        string target = PathOf(destination ?? file);
        Directory.CreateDirectory(Path.GetDirectoryName(target)!);
        File.WriteAllBytes(target, File.ReadAllBytes(Fixtures.Export(flavour, file)));
        return target;
    }

    /// <summary>The GQA fixture (model.onnx, and model.onnx.data when <paramref name="withData"/>) in <paramref name="folder"/>.</summary>
    public string CopyGqaModel(bool withData = true, string folder = "")
    {
        string model = CopyFixture("llama-genai-gqa-fp32", "model.onnx", Path.Combine(folder, "model.onnx"));
        if (withData) CopyFixture("llama-genai-gqa-fp32", "model.onnx.data", Path.Combine(folder, "model.onnx.data"));
        return model;
    }

    /// <summary>All files below the folder, relative, sorted.</summary>
    public string[] Files() => Directory.GetFiles(Root, "*", SearchOption.AllDirectories)
        .Select(f => Path.GetRelativePath(Root, f)).Order(StringComparer.Ordinal).ToArray();

    public static string Sha256(string path) => Convert.ToHexString(SHA256.HashData(File.ReadAllBytes(path)));

    public void Dispose()
    {
        try { Directory.Delete(Root, recursive: true); }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
    }
}
