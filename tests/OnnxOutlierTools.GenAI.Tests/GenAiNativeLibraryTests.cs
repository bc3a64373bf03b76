using System.Reflection;
using System.Security.Cryptography;
using OnnxOutlierTools.Runtime;
using OnnxOutlierTools.Tests;

namespace OnnxOutlierTools.GenAI.Tests;

/// <summary>The genai package brings the CPU ORT package (same version, same libonnxruntime.so file name) and
/// the repository uses the Gpu one: the output must hold one libonnxruntime.so, the Gpu package's, and our
/// sessions and genai must both run on that one library in one process.</summary>
public sealed class GenAiNativeLibraryTests : IDisposable
{
    private readonly TempFolder _temp = new("genai-native");

    private static string NativeFolder => Path.Combine(AppContext.BaseDirectory, "runtimes", "linux-x64", "native");

    private static string PackageRoot => typeof(GenAiNativeLibraryTests).Assembly.GetCustomAttributes<AssemblyMetadataAttribute>()
        .Single(a => a.Key == "NuGetPackageRoot").Value!;

    [SkippableFact]
    public void Output_HoldsTheGpuPackagesOnnxRuntime_Only()
    {
        Skip.IfNot(OperatingSystem.IsLinux() && Environment.Is64BitProcess, "linux-x64 layout");
        var runtimes = Directory.EnumerateFiles(AppContext.BaseDirectory, "libonnxruntime.so*", SearchOption.AllDirectories).ToArray();
        Assert.Equal([Path.Combine(NativeFolder, "libonnxruntime.so")], runtimes);

        string gpu = Path.Combine(PackageRoot, "microsoft.ml.onnxruntime.gpu.linux", "1.32.0", "runtimes", "linux-x64", "native", "libonnxruntime.so");
        string cpu = Path.Combine(PackageRoot, "microsoft.ml.onnxruntime", "1.32.0", "runtimes", "linux-x64", "native", "libonnxruntime.so");
        Assert.True(File.Exists(gpu), gpu);
        Assert.Equal(Sha256(gpu), Sha256(runtimes[0]));
        if (File.Exists(cpu)) Assert.NotEqual(Sha256(cpu), Sha256(runtimes[0])); // the two packages' files do differ
        Assert.True(File.Exists(Path.Combine(NativeFolder, "libonnxruntime-genai.so")));
    }

    [SkippableFact]
    public void OurSessionsAndGenAi_ShareOneOnnxRuntimeInProcess()
    {
        Skip.IfNot(OperatingSystem.IsLinux(), "/proc/self/maps");
        string folder = GenAiFolders.CopyGqaFixture(_temp.Folder("gqa"));
        int[] ours = OurGreedy.Run(Path.Combine(folder, "model.onnx"), [1, 15043, 3186], 3);
        var genai = GenAiGeneration.Greedy(folder, [1, 15043, 3186], 3);
        Assert.Equal(ours, genai.NewTokens);

        var loaded = File.ReadLines("/proc/self/maps").Select(l => l.IndexOf('/') is int i and >= 0 ? l[i..] : "").Distinct().ToArray();
        // One ONNX Runtime in the process (other tests may have loaded its providers_shared library too).
        Assert.Equal([Path.Combine(NativeFolder, "libonnxruntime.so")], loaded.Where(p => Path.GetFileName(p).StartsWith("libonnxruntime.so", StringComparison.Ordinal)));
        Assert.Contains(Path.Combine(NativeFolder, "libonnxruntime-genai.so"), loaded);
    }

    private static string Sha256(string path) => Convert.ToHexString(SHA256.HashData(File.ReadAllBytes(path)));

    public void Dispose() => _temp.Dispose();
}
