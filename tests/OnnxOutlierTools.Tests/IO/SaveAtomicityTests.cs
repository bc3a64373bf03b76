using OnnxOutlierTools.IO;
using OnnxOutlierTools.Ir;
using OnnxOutlierTools.Tensors;

namespace OnnxOutlierTools.Tests.IO;

/// <summary>A model and its data file are replaced as a pair: whichever rename fails, the folder holds a
/// consistent pair (old or new), never an old model reading new data; and replacing keeps permissions.</summary>
[System.Runtime.Versioning.UnsupportedOSPlatform("windows")] // permission bits
public sealed class SaveAtomicityTests : IDisposable
{
    private readonly TempFolder _temp = new("save-atomicity");
    private static readonly SaveOptions External = new() { Layout = TensorLayout.External, ExternalThreshold = 16, Durable = false, Overwrite = true };

    /// <summary>Four external weights; weight i holds <c>fill + i</c> everywhere, and the layouts of two
    /// fills differ (an extra leading tensor) so an old model reading new data reads the wrong bytes.</summary>
    private static Model PairModel(float fill, bool shifted = false)
    {
        var weights = new List<Tensor>();
        if (shifted) weights.Add(Filled(-1));
        for (int i = 0; i < 4; i++) weights.Add(Filled(fill + i));
        return SaveSafetyTests.TinyModel([.. weights]);
    }

    private static ArrayTensor Filled(float value) => ArrayTensor.Create<float>(Enumerable.Repeat(value, 64 * 64).ToArray(), 64, 64);

    /// <summary>Loads the model at <paramref name="path"/> and returns the first value of each weight.</summary>
    private static float[] Weights(string path)
    {
        using var model = ModelReader.Load(path);
        return model.Graph.Initializers.Select(v =>
        {
            var all = v.ConstValue!.ToSingleArray();
            Assert.All(all, x => Assert.Equal(all[0], x)); // every element as written: no torn or shifted read
            return all[0];
        }).ToArray();
    }

    private (string Folder, string Path) OldPair()
    {
        string folder = _temp.Folder("pair");
        string path = System.IO.Path.Combine(folder, "m.onnx");
        using var old = PairModel(10);
        ModelWriter.Save(old, path, External);
        Assert.Equal([10f, 11, 12, 13], Weights(path));
        return (folder, path);
    }

    private static string[] Names(string folder) => Directory.GetFileSystemEntries(folder).Select(System.IO.Path.GetFileName).Order(StringComparer.Ordinal).ToArray()!;

    [Fact]
    public void FailingCommitRename_LeavesTheOldPairIntactAndNoFiles()
    {
        var (folder, path) = OldPair();
        using var next = PairModel(20, shifted: true);
        var failing = External with { RenameHook = (_, destination) => { if (destination == path) throw new IOException("rename refused"); } };

        var ex = Assert.Throws<ModelSaveException>(() => ModelWriter.Save(next, path, failing));
        Assert.Contains("rename refused", ex.Message);
        Assert.DoesNotContain(".tmp", ex.Message);
        Assert.Equal([10f, 11, 12, 13], Weights(path)); // the old model still reads the old data
        Assert.Equal(["m.onnx", "m.onnx.data"], Names(folder));
    }

    [Fact]
    public void FailingRenamesAfterTheCommit_LeaveTheNewPairConsistent()
    {
        // After the commit the model references DATA.TOKEN; a failure while giving the data its name
        // leaves that consistent pair and says so.
        foreach (int failAt in new[] { 2, 3 })
        {
            var (folder, path) = OldPair();
            using var next = PairModel(20, shifted: true);
            int renames = 0;
            var failing = External with { RenameHook = (_, _) => { if (++renames == failAt) throw new IOException("rename refused"); } };

            var result = ModelWriter.Save(next, path, failing);
            Assert.Equal([-1f, 20, 21, 22, 23], Weights(path));
            var warning = Assert.Single(result.Warnings);
            Assert.Contains("references its data as 'm.onnx.data.", warning);
            Assert.True(File.Exists(result.DataPath), result.DataPath);
            Assert.Equal(["m.onnx", "m.onnx.data", System.IO.Path.GetFileName(result.DataPath)!], Names(folder));
            Directory.Delete(folder, recursive: true);
        }
    }

    [Fact]
    public void ReplacingAPair_LeavesExactlyTheNewPairUnderTheAskedNames()
    {
        var (folder, path) = OldPair();
        using var next = PairModel(20, shifted: true);
        var renames = new List<string>();
        var result = ModelWriter.Save(next, path, External with { RenameHook = (_, d) => renames.Add(System.IO.Path.GetFileName(d)) });

        Assert.Empty(result.Warnings);
        Assert.Equal(System.IO.Path.Combine(folder, "m.onnx.data"), result.DataPath);
        Assert.Equal([-1f, 20, 21, 22, 23], Weights(path));
        Assert.Equal(["m.onnx", "m.onnx.data"], Names(folder));
        // The model is committed first (referencing the new data under its own name), then the data gets its name.
        Assert.Equal(["m.onnx", "m.onnx.data", "m.onnx"], renames);
        Assert.Equal(result.ModelBytes, new FileInfo(path).Length);
    }

    [Fact]
    public void ReplacingAFile_KeepsItsPermissions()
    {
        var (folder, path) = OldPair();
        string data = System.IO.Path.Combine(folder, "m.onnx.data");
        File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        File.SetUnixFileMode(data, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead);
        using var next = PairModel(20);
        ModelWriter.Save(next, path, External);

        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(path));
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead, File.GetUnixFileMode(data));
        Assert.Equal([20f, 21, 22, 23], Weights(path));
    }

    [Fact]
    public void StaleTemporariesOfTheSameOutput_AreRemovedByTheNextSave()
    {
        var (folder, path) = OldPair();
        // What a SIGKILL leaves: hidden temporaries with a save token, and an alternate data file.
        string[] stale = [".m.onnx.0123456789ab.tmp", ".m.onnx.data.0123456789ab.tmp", "m.onnx.data.0123456789ab"];
        foreach (string name in stale) File.WriteAllBytes(System.IO.Path.Combine(folder, name), new byte[4096]);
        // Not ours: another output's temporary, a file that merely looks similar.
        string[] others = [".other.onnx.0123456789ab.tmp", ".m.onnx.notatoken.tmp", "m.onnx.data.backup"];
        foreach (string name in others) File.WriteAllBytes(System.IO.Path.Combine(folder, name), [1]);

        using var next = PairModel(20, shifted: true);
        ModelWriter.Save(next, path, External);
        Assert.Equal(new[] { "m.onnx", "m.onnx.data" }.Concat(others).Order(StringComparer.Ordinal), Names(folder));
        Assert.Equal([-1f, 20, 21, 22, 23], Weights(path));
    }

    [Fact]
    public void ATemporaryALiveSaveHolds_IsNotRemoved()
    {
        var (folder, path) = OldPair();
        string live = System.IO.Path.Combine(folder, ".m.onnx.0123456789ab.tmp");
        using (var held = new FileStream(live, FileMode.CreateNew, FileAccess.Write, FileShare.None))
        {
            using var next = PairModel(20);
            ModelWriter.Save(next, path, External);
            Assert.True(File.Exists(live));
        }
        File.Delete(live);
    }

    public void Dispose() => _temp.Dispose();
}
