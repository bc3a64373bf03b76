using OnnxOutlierTools.IO;
using OnnxOutlierTools.Tests.Runtime;

namespace OnnxOutlierTools.Tests.IO;

/// <summary>Every exported fixture survives load -> save -> reload: the reloaded model equals the
/// original (ModelComparison) and ONNX Runtime (CPU, optimizations off) gives bitwise-equal outputs.</summary>
public sealed class FixtureRoundTripTests : IDisposable
{
    private readonly TempFolder _temp = new("roundtrip");

    public static TheoryData<string> Names => FixtureRecipes.Names;

    [Theory]
    [MemberData(nameof(Names))]
    public void SaveAndReload_DefaultOptions_GivesEqualModelAndBitwiseEqualOutputs(string fixture)
    {
        var recipe = FixtureRecipes.Get(fixture);
        using var original = ModelReader.Load(recipe.ModelPath);
        string saved = _temp.Path(fixture, recipe.File);
        var result = ModelWriter.Save(original, saved, new SaveOptions { Durable = false });

        Assert.False(result.ForcedExternal);
        if (recipe.HasExternalData)
        {
            Assert.True(result.ExternalTensors > 0, "Preserve keeps external tensors external");
            Assert.True(File.Exists(result.DataPath));
        }
        else
        {
            Assert.Equal(0, result.ExternalTensors);
            Assert.Null(result.DataPath);
        }
        using (var reloaded = ModelReader.Load(saved))
        {
            var comparison = ModelComparison.Compare(original, reloaded);
            Assert.True(comparison.AreEqual, comparison.ToString());
        }
        var outputs = ReferenceRuns.CompareWithOriginal(fixture, saved);
        Assert.True(outputs.AllBitwiseEqual, outputs.ToString());
    }

    [Theory]
    [MemberData(nameof(Names))]
    public void ExternalThenEmbed_KeepsModelAndBitwiseEqualOutputs(string fixture)
    {
        var recipe = FixtureRecipes.Get(fixture);
        using var original = ModelReader.Load(recipe.ModelPath);

        string externalPath = _temp.Path("external", recipe.File);
        var external = ModelWriter.Save(original, externalPath, new SaveOptions { Layout = TensorLayout.External, ExternalThreshold = 64, Durable = false });
        Assert.True(external.ExternalTensors > 0, $"{external.ExternalTensors} external tensors");
        Assert.True(File.Exists(external.DataPath));
        Assert.True(new FileInfo(externalPath).Length < new FileInfo(recipe.ModelPath).Length || recipe.HasExternalData);

        using var reloaded = ModelReader.Load(externalPath);
        Assert.Equal(external.ExternalTensors, reloaded.Graph.SelfAndSubgraphs().SelectMany(g => g.Initializers)
            .Count(v => v.ConstValue!.Storage == Tensors.TensorStorage.External));
        var comparison = ModelComparison.Compare(original, reloaded);
        Assert.True(comparison.AreEqual, comparison.ToString());
        var outputs = ReferenceRuns.CompareWithOriginal(fixture, externalPath);
        Assert.True(outputs.AllBitwiseEqual, "external: " + outputs);

        string embeddedPath = _temp.Path("embedded", recipe.File);
        var embedded = ModelWriter.Save(reloaded, embeddedPath, new SaveOptions { Layout = TensorLayout.Embed, Durable = false });
        Assert.Equal(0, embedded.ExternalTensors);
        Assert.Null(embedded.DataPath);
        Assert.Equal([recipe.File], Directory.GetFiles(_temp.Path("embedded")).Select(Path.GetFileName));

        using var back = ModelReader.Load(embeddedPath);
        Assert.Empty(back.ExternalFiles);
        comparison = ModelComparison.Compare(original, back);
        Assert.True(comparison.AreEqual, comparison.ToString());
        outputs = ReferenceRuns.CompareWithOriginal(fixture, embeddedPath);
        Assert.True(outputs.AllBitwiseEqual, "embedded: " + outputs);
    }

    public void Dispose() => _temp.Dispose();
}
