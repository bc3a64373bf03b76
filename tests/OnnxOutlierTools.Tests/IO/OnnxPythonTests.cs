namespace OnnxOutlierTools.Tests.IO;

/// <summary>The reference checker never writes the file it is given (onnx 1.12's full_check writes the
/// shape-inferred model back to its path, which once rewrote four shared fixtures).</summary>
public sealed class OnnxPythonTests : IDisposable
{
    private readonly TempFolder _temp = new("checker-safety");

    [SkippableTheory]
    [InlineData("distilbert-optimum", "model.onnx", false)]
    [InlineData("llama-torch-nopast", "model.onnx", false)]
    [InlineData("llama-genai-gqa-fp32", "model.onnx", true)]
    public void Check_FullCheckAndRelabel_LeavesTheCheckedFilesUnchanged(string fixture, string file, bool relabel)
    {
        Skip.If(OnnxPython.Executable is null, OnnxPython.UnavailableReason);
        // A writable stand-in for the fixture (these are the files full_check used to rewrite).
        string model = _temp.CopyFixture(fixture, file, Path.Combine(fixture, file));
        if (fixture == "llama-genai-gqa-fp32") _temp.CopyFixture(fixture, "model.onnx.data", Path.Combine(fixture, "model.onnx.data"));
        var before = _temp.Files().ToDictionary(f => f, f => TempFolder.Sha256(_temp.Path(f)));
        var writeTimes = _temp.Files().ToDictionary(f => f, f => File.GetLastWriteTimeUtc(_temp.Path(f)));

        var verdicts = OnnxPython.Check(new(model), new(model, FullCheck: false, RelabelUnknownDefaultDomainOps: relabel),
            new(model, RelabelUnknownDefaultDomainOps: relabel));

        Assert.Equal(3, verdicts.Count);
        Assert.Equal(before.Keys, _temp.Files()); // nothing added beside the file (no relabelled copies)
        foreach (var (name, hash) in before)
        {
            Assert.Equal(hash, TempFolder.Sha256(_temp.Path(name)));
            Assert.Equal(writeTimes[name], File.GetLastWriteTimeUtc(_temp.Path(name)));
        }
    }

    [SkippableFact]
    public void Check_ExternalDataModel_SeesItsDataThroughTheCopy()
    {
        Skip.If(OnnxPython.Executable is null, OnnxPython.UnavailableReason);
        string model = _temp.CopyGqaModel(withData: true, folder: "with-data");
        string withoutData = _temp.CopyGqaModel(withData: false, folder: "without-data");
        // The plain check is the one that stats external data files (full_check fails this published graph
        // for its scalar-declared Constants, see OnnxCheckerTests).
        var verdicts = OnnxPython.Check(new(model, FullCheck: false, RelabelUnknownDefaultDomainOps: true),
            new(withoutData, FullCheck: false, RelabelUnknownDefaultDomainOps: true));
        Assert.True(verdicts[0].Ok, verdicts[0].ToString());
        Assert.False(verdicts[1].Ok, "a model whose external data file is missing must fail the checker");
        Assert.Contains("model.onnx.data", verdicts[1].Error);
    }

    public void Dispose() => _temp.Dispose();
}
