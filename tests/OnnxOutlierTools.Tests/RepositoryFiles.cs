namespace OnnxOutlierTools.Tests;

/// <summary>Files of the repository itself (onnx-models/, README.md), found from the test binary's folder upwards.</summary>
public static class RepositoryFiles
{
    public static string Root { get; } = FindRoot();

    public static string Path(params string[] parts) => System.IO.Path.Combine([Root, .. parts]);

    private static string FindRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(System.IO.Path.Combine(dir.FullName, "OnnxOutlierTools.sln"))) return dir.FullName;
        throw new DirectoryNotFoundException("repository root not found (no OnnxOutlierTools.sln above the test binary)");
    }
}
