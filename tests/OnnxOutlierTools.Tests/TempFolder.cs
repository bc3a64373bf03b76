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
