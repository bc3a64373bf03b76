using OnnxOutlierTools.IO;
using OnnxOutlierTools.Ir;
using OnnxOutlierTools.Tests.Runtime;
using Xunit.Abstractions;

namespace OnnxOutlierTools.Tests.IO;

/// <summary>What we save is valid ONNX for the reference checker (<c>onnx.checker.check_model(path,
/// full_check=True)</c>, Debian's onnx 1.12, which knows ai.onnx up to opset 17 and IR 8).
///
/// Six fixtures are rejected by that checker AS PUBLISHED (see <see cref="PublishedDefects"/>), so a
/// lossless save of them must be rejected in the same words: that is the first test. The second
/// test repairs what the exporters got wrong through the IR (node order, a name defined twice, a
/// missing opset import, Constant outputs declared with the wrong rank) and requires the saved file
/// to pass full_check. For ORT contrib ops that ORT registers in the DEFAULT domain
/// (SimplifiedLayerNormalization in the genai exports, LayerNormalization at opset 11 inside the
/// BeamSearch decoder) onnx 1.12 has no schema and the checker fails even without full_check; that is
/// the checker's limitation, so for those the check runs on a temporary copy with just those nodes
/// moved to com.microsoft (a domain the checker skips), and everything else is checked in full.</summary>
public sealed class OnnxCheckerTests(ITestOutputHelper output) : IDisposable
{
    private readonly TempFolder _temp = new("checker");

    /// <summary>Why onnx 1.12's checker rejects a fixture as published (a substring of its message).</summary>
    private static readonly Dictionary<string, string> PublishedDefects = new()
    {
        // Nodes written out of order by ORT test tooling (ORT sorts on load, the checker does not).
        ["bert-toy-torch"] = "Nodes in a graph must be topologically sorted",
        ["gpt2-torch-nopast"] = "Nodes in a graph must be topologically sorted",
        ["gpt2-torch-past"] = "Nodes in a graph must be topologically sorted",
        ["llama-genai-mha-fp16"] = "Nodes in a graph must be topologically sorted",
        // MANIFEST caveat: top-level opset_import lists only ai.onnx although com.microsoft ops are used.
        ["gpt2-ort-beamsearch"] = "No opset import for domain 'com.microsoft'",
        // ORT contrib op in the default domain; no schema in onnx 1.12 (checker limitation, see above).
        ["llama-genai-gqa-fp32"] = "No Op registered for SimplifiedLayerNormalization",
    };

    /// <summary>Default-domain ops the checker may be spared (ORT registers them in the ONNX domain).</summary>
    private static readonly HashSet<string> OrtDefaultDomainOps = ["SimplifiedLayerNormalization", "LayerNormalization"];

    public static TheoryData<string> Names => FixtureRecipes.Names;

    [SkippableTheory]
    [MemberData(nameof(Names))]
    public void LosslessSave_GetsThePublishedFilesCheckerVerdict(string fixture)
    {
        var recipe = FixtureRecipes.Get(fixture);
        using var model = LoadCheckable(recipe);
        string preserved = _temp.Path("preserve", recipe.File);
        string external = _temp.Path("external", recipe.File);
        ModelWriter.Save(model, preserved, new SaveOptions { Durable = false });
        ModelWriter.Save(model, external, new SaveOptions { Layout = TensorLayout.External, ExternalThreshold = 64, Durable = false });

        var verdicts = OnnxPython.Check(new(recipe.ModelPath), new(preserved), new(external));
        if (PublishedDefects.TryGetValue(fixture, out string? defect))
        {
            Assert.False(verdicts[0].Ok, $"the published file now passes the checker; drop it from {nameof(PublishedDefects)}");
            Assert.Contains(defect, verdicts[0].Error);
        }
        else Assert.True(verdicts[0].Ok, $"published file: {verdicts[0]}");
        Assert.Equal(verdicts[0].ToString(), verdicts[1].ToString());
        Assert.Equal(verdicts[0].ToString(), verdicts[2].ToString());
    }

    [SkippableTheory]
    [MemberData(nameof(Names))]
    public void RepairedSave_PassesFullCheckAndRunsBitwiseEqual(string fixture)
    {
        var recipe = FixtureRecipes.Get(fixture);
        using var model = LoadCheckable(recipe);
        Repair(model);

        string saved = _temp.Path("repaired", recipe.File);
        string external = _temp.Path("repaired-external", recipe.File);
        ModelWriter.Save(model, saved, new SaveOptions { Durable = false });
        ModelWriter.Save(model, external, new SaveOptions { Layout = TensorLayout.External, ExternalThreshold = 64, Durable = false });

        var verdicts = OnnxPython.Check(new(saved, RelabelUnknownDefaultDomainOps: true), new(external, RelabelUnknownDefaultDomainOps: true));
        output.WriteLine($"{fixture}: {verdicts[0]}");
        foreach (var verdict in verdicts)
        {
            Assert.True(verdict.Ok, verdict.ToString());
            Assert.Subset(OrtDefaultDomainOps, verdict.Relabelled.ToHashSet());
        }
        var outputs = ReferenceRuns.CompareWithOriginal(fixture, saved);
        Assert.True(outputs.AllBitwiseEqual, outputs.ToString());
    }

    /// <summary>Fixes what the exporters got wrong, through the IR, without changing what the model computes.</summary>
    private static void Repair(Model model)
    {
        foreach (var graph in model.Graph.SelfAndSubgraphs().ToList())
        {
            graph.RemoveDeadNodes(); // gpt2-torch-past defines some names twice; uses bind to the last definition
            graph.TopologicalSort(); // four fixtures list nodes out of order
            // The genai builder declares its 1-D Constant outputs as scalars in value_info.
            foreach (var node in graph.Nodes.Where(n => n.Is("Constant") && n.GetAttribute("value") is not null))
            {
                var tensor = node.GetAttribute("value")!.AsTensor();
                var output = node.Outputs[0]!;
                if (output.Shape is { } declared && declared.Count != tensor.Dims.Count)
                    output.SetTensorType(tensor.DataType, tensor.Dims.Select(d => new Dim(d)));
            }
        }
        // gpt2-ort-beamsearch uses com.microsoft ops without importing the domain.
        if (model.Graph.AllNodes().Any(n => n.Domain == "com.microsoft")) model.RequireOpset("com.microsoft", 1);
    }

    private static Model LoadCheckable(FixtureRecipe recipe)
    {
        Skip.If(OnnxPython.Executable is null, OnnxPython.UnavailableReason);
        var model = ModelReader.Load(recipe.ModelPath);
        long opset = model.OpsetVersion("") ?? 1;
        if (opset > 17)
        {
            model.Dispose();
            Skip.If(true, $"ai.onnx opset {opset} (IR {model.IrVersion}) is newer than onnx 1.12's checker (opset 17, IR 8); the requirement covers opset <= 17");
        }
        return model;
    }

    public void Dispose() => _temp.Dispose();
}
