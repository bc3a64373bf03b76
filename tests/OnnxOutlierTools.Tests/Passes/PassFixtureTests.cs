using OnnxOutlierTools.IO;
using OnnxOutlierTools.Ir;
using OnnxOutlierTools.Passes;
using OnnxOutlierTools.Tests.IO;
using OnnxOutlierTools.Tests.Runtime;

namespace OnnxOutlierTools.Tests.Passes;

/// <summary>The two proof passes on real exports: dead nodes and duplicate initializers are planted in
/// the main graph and in every nested graph (the BeamSearch fixture's encoder and decoder), the passes
/// remove exactly those, and ONNX Runtime (CPU, optimizations off) gives outputs bitwise equal to the
/// unmodified fixture's on the same inputs (the passes change no arithmetic).</summary>
public sealed class PassFixtureTests : IDisposable
{
    private readonly TempFolder _temp = new("passes");

    public static TheoryData<string> Fixtures => ["gpt2-ort-beamsearch", "llama-torch-nopast", "bert-toy-torch"];

    [Theory]
    [MemberData(nameof(Fixtures))]
    public void DedupeAndDeadNodes_PlantedInEveryGraph_AreRemovedAndOutputsBitwiseEqual(string fixture)
    {
        var recipe = FixtureRecipes.Get(fixture);
        using var model = ModelReader.Load(recipe.ModelPath);
        int graphs = 0, planted = 0, live = 0;
        foreach (var graph in model.Graph.SelfAndSubgraphs().ToList())
        {
            graphs++;
            // A copy of a small initializer: given to one of its uses when it has two (the model then computes
            // with the copy), else read with the original by a planted Add that is otherwise dead.
            var source = graph.Initializers.Where(v => v.ConstValue!.ByteLength is > 0 and < 4096 && !v.IsGraphInput && v.Uses.Any(u => u.Node is not null))
                .OrderByDescending(v => v.Uses.Count).FirstOrDefault();
            if (source is not null)
            {
                var copy = graph.AddInitializer(model.Names.NewValueName(source.Name + "_copy"), source.ConstValue!);
                if (source.Uses.Count(u => u.Node is not null) >= 2)
                {
                    var use = source.Uses.First(u => u.Node is not null);
                    use.Node!.ReplaceInput(use.Index, copy);
                    live++;
                }
                else graph.Append(new Node("", "Add", [source, copy], [model.Names.NewValueName("planted_add")], name: model.Names.NewNodeName("planted_add")));
                planted++;
            }
            // A dead chain reading the graph's first float value.
            var read = graph.Inputs.Concat(graph.Nodes.SelectMany(n => n.Outputs)).FirstOrDefault(v => v?.ElementType == Tensors.TensorDataType.Float);
            if (read is not null)
            {
                var neg = new Node("", "Neg", [read], [model.Names.NewValueName("planted_neg")], name: model.Names.NewNodeName("planted_neg"));
                graph.Append(neg);
                graph.Append(new Node("", "Abs", [neg.Outputs[0]], [model.Names.NewValueName("planted_abs")], name: model.Names.NewNodeName("planted_abs")));
            }
        }
        Assert.True(planted > 0);
        if (fixture == "gpt2-ort-beamsearch") Assert.True(graphs >= 2 && live > 0, $"{graphs} graphs, {live} live copies: the decoder subgraph is visited");
        int initializersBefore = model.Graph.SelfAndSubgraphs().Sum(g => g.Initializers.Count);

        var result = new PassSequence("tidy", new InitializerDeduplication(), new DeadNodeElimination()).Run(new PassContext(model));

        Assert.True(result.Count("initializer-deduplication/merged-initializers") >= planted, result.ToString());
        Assert.DoesNotContain(model.Graph.AllNodes(), n => n.Name.StartsWith("planted_"));
        Assert.DoesNotContain(model.Graph.SelfAndSubgraphs().SelectMany(g => g.Initializers), v => v.Name.EndsWith("_copy"));
        Assert.True(model.Graph.SelfAndSubgraphs().Sum(g => g.Initializers.Count) <= initializersBefore - planted);
        Assert.Null(GraphCheck.FindProblem(model.Graph));

        string saved = _temp.Path(fixture, recipe.File);
        ModelWriter.Save(model, saved, new SaveOptions { Durable = false });
        var outputs = ReferenceRuns.CompareWithOriginal(fixture, saved);
        Assert.True(outputs.AllBitwiseEqual, outputs.ToString());
    }

    [SkippableFact]
    public void Rewrite_NodesWithProvenanceMetadata_PassTheOnnxChecker()
    {
        Skip.If(OnnxPython.Executable is null, OnnxPython.UnavailableReason);
        using var model = PassTests.DivSqrtModel();
        Assert.True(PassTests.DivSqrtRule().Sequence().Run(new PassContext(model)).Changed);
        Assert.Contains(model.Graph.Nodes, n => NodeOrigin.Of(n) is { Pass: "div-sqrt" });
        string path = _temp.Path("rewritten.onnx");
        ModelWriter.Save(model, path, new SaveOptions { Durable = false });
        var verdict = Assert.Single(OnnxPython.Check(new OnnxPython.Request(path)));
        Assert.True(verdict.Ok, verdict.ToString());
    }

    public void Dispose() => _temp.Dispose();
}
