namespace OnnxOutlierTools.Tests;

/// <summary>Locates ../shared/fixtures (read-only test data beside the checkout).</summary>
public static class Fixtures
{
    public static string Root { get; } = FindRoot();

    public static string Path(params string[] parts) => System.IO.Path.Combine([Root, .. parts]);

    public static string Export(string flavour, string file) => Path("exports", flavour, file);

    private static string FindRoot()
    {
        var env = Environment.GetEnvironmentVariable("ONNX_OUTLIERS_FIXTURES");
        if (!string.IsNullOrEmpty(env)) return env;
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            var candidate = System.IO.Path.Combine(dir.FullName, "shared", "fixtures");
            if (Directory.Exists(candidate) && File.Exists(System.IO.Path.Combine(candidate, "MANIFEST.md"))) return candidate;
        }
        throw new InvalidOperationException("../shared/fixtures not found (set ONNX_OUTLIERS_FIXTURES)");
    }
}
