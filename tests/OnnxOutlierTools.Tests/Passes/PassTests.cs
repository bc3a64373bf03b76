using OnnxOutlierTools.IO;
using OnnxOutlierTools.Ir;
using OnnxOutlierTools.Passes;
using OnnxOutlierTools.Passes.Rewriting;
using OnnxOutlierTools.Runtime;
using OnnxOutlierTools.Structure.Patterns;
using OnnxOutlierTools.Tensors;

namespace OnnxOutlierTools.Tests.Passes;

/// <summary>The pass type on tiny graphs: definitions validated at construction, results (counts,
/// skipped sites), sequences (fixed cleanup order, the failing pass named), nested graphs reached.</summary>
public class PassTests
{
    [Fact]
    public void Definition_InvalidOptions_ThrowAtConstruction()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => new InitializerDeduplication(maxBytes: 0));
        Assert.Throws<ArgumentException>(() => new PassSequence("empty", Array.Empty<Pass>()));
        Assert.Throws<ArgumentException>(() => new Throwing("Not A Name"));
        var rule = new RewriteRule("relu-to-relu", P.Op("Relu", P.Var("x")), null, (m, c) => c.Add("Relu", [m["x"]]));
        Assert.Throws<ArgumentException>(() => new RewritePass("twice", rule, rule));
        Assert.Throws<ArgumentException>(() => new RewritePass("none"));
    }

    [Fact]
    public void DeadNodeElimination_RemovesUnusedChain_KeepsNodeWithoutOutputs()
    {
        var b = new GraphBuilder();
        var x = b.Input("x", TensorDataType.Float, 4);
        b.Output(b.Op("Relu", x), TensorDataType.Float, 4);
        b.Op("Exp", b.Op("Abs", b.Op("Neg", x)));                     // a dead chain of three
        b.Graph.Append(new Node("", "Print", [x], [null], name: "print")); // requests no output
        using var model = b.ToModel();

        var result = model.Apply(new DeadNodeElimination());

        Assert.True(result.Changed);
        Assert.Equal(3, result.Count(DeadNodeElimination.RemovedNodes));
        Assert.Equal(["Relu", "Print"], model.Graph.Nodes.Select(n => n.OpType));
        var skipped = Assert.Single(result.Skipped);
        Assert.Equal("Print 'print'", skipped.At);
        Assert.Contains("side effect", skipped.Reason);
        Assert.False(model.Apply(new DeadNodeElimination()).Changed);
    }

    [Fact]
    public void InitializerDeduplication_MergesEqualCopies_KeepsGraphInputsAndDifferentData()
    {
        var b = new GraphBuilder();
        var x = b.Input("x", TensorDataType.Float, 3);
        var a1 = b.Initializer("a1", [1f, 2f, 3f]);
        var a2 = b.Initializer("a2", [1f, 2f, 3f]);
        var a3 = b.Initializer("a3", [1f, 2f, 3f]);
        var other = b.Initializer("other", [1f, 2f, 4f]);
        var asInt = b.Initializer("as_int", [1, 2, 3]);                 // other element type
        var fed = b.Input("fed", TensorDataType.Float, 3);             // an input with a default: overridable
        fed.ConstValue = ArrayTensor.Create<float>([1f, 2f, 3f], 3);
        b.Graph.AddInitializerRaw(fed);
        var y = b.Op("Add", b.Op("Mul", b.Op("Add", x, a1), a2), b.Op("Sub", a3, other));
        b.Output(b.Op("Add", b.Op("Mul", y, fed), b.Op("Cast", asInt)), TensorDataType.Float, 3);
        using var model = b.ToModel();

        var result = model.Apply(new InitializerDeduplication());

        Assert.Equal(2, result.Count(InitializerDeduplication.MergedInitializers));
        Assert.Equal(["a1", "other", "as_int", "fed"], model.Graph.Initializers.Select(v => v.Name));
        Assert.Equal(3, a1.Uses.Count);
        Assert.Empty(a2.Uses);
        Assert.Empty(a3.Uses);
        Assert.Contains(result.Skipped, s => s.At == "fed" && s.Reason.Contains("graph input"));
    }

    [Fact]
    public void Sequence_CleansUpInFixedOrderAfterAChange_AndLeavesAnUnchangedModelAlone()
    {
        using var model = DivSqrtModel();
        model.Graph.Append(new Node("", "Neg", [model.Graph.Inputs[0]], ["dead"], name: "dead"));
        var sequence = new PassSequence("tidy", new InitializerDeduplication());

        var unchanged = sequence.Run(new PassContext(model));
        Assert.False(unchanged.Changed);
        Assert.Equal(["initializer-deduplication"], unchanged.Steps.Select(s => s.Pass));
        Assert.Contains(model.Graph.Nodes, n => n.Name == "dead");

        var result = DivSqrtRule().Sequence().Run(new PassContext(model));
        Assert.True(result.Changed);
        Assert.Equal(["div-sqrt", "dead-node-elimination", "unused-initializer-removal", "topological-sort"], result.Steps.Select(s => s.Pass));
        Assert.Equal(1, result.Counts["div-sqrt/div-sqrt-to-mul-reciprocal"]);
        Assert.Equal(2, result.Counts["dead-node-elimination/removed-nodes"]);   // the Div and the planted Neg
        Assert.DoesNotContain(model.Graph.Nodes, n => n.Is("Div") || n.Name == "dead");
    }

    [Fact]
    public void Sequence_FailingPass_IsNamedInTheException()
    {
        using var model = DivSqrtModel();
        var e = Assert.Throws<PassException>(() => new PassSequence("outer", new DeadNodeElimination(), new Throwing("boom")).Run(new PassContext(model)));
        Assert.Equal("boom", e.PassName);
        Assert.Equal("pass 'boom' failed: no luck", e.Message);

        // A pass that leaves a node reading a removed node's output: named by the check after each pass,
        // and by the cleanup's topological check (the last line of defence) when that check is off.
        var breaking = new PassSequence("outer", new Breaking());
        e = Assert.Throws<PassException>(() => breaking.Run(new PassContext(DivSqrtModel(), new PassOptions { CheckAfterEachPass = true })));
        Assert.Equal("breaking", e.PassName);
        Assert.Contains("reads", e.Message);
        e = Assert.Throws<PassException>(() => breaking.Run(new PassContext(DivSqrtModel())));
        Assert.Equal("topological-sort", e.PassName);
    }

    [Fact]
    public void GraphPass_ReachesIfBranches_UnlessOptionsSayMainGraphOnly_AndOrtAgrees()
    {
        Model Build()
        {
            var b = new GraphBuilder();
            var cond = b.Input("cond", TensorDataType.Bool);
            var x = b.Input("x", TensorDataType.Float, 4);
            // Both branches read x from the enclosing graph; the then-branch also computes a value nobody uses.
            var thenBranch = new Graph("then");
            var then = new GraphEditor(thenBranch, b.Names);
            then.AddNode("Neg", [x], name: "dead_in_branch");
            thenBranch.AddOutput(then.AddNode("Relu", [x], name: "branch_relu").Outputs[0]!);
            var elseBranch = new Graph("else");
            elseBranch.AddOutput(new GraphEditor(elseBranch, b.Names).AddNode("Neg", [x], name: "else_neg").Outputs[0]!);
            var ifNode = b.Editor.AddNode("If", [cond],
                [GraphEditor.GraphAttribute("then_branch", thenBranch), GraphEditor.GraphAttribute("else_branch", elseBranch)], name: "if", outputs: ["y"]);
            Assert.Same(ifNode, thenBranch.ParentNode);
            b.Output(ifNode.Outputs[0]!, TensorDataType.Float, 4);
            return b.ToModel(irVersion: 8, new OpsetId("", 17));
        }

        using var temp = new TempFolder("pass-if");
        using var original = Build();
        ModelWriter.Save(original, temp.Path("original.onnx"), new SaveOptions { Durable = false });
        using var model = Build();
        Assert.Equal(0, model.Apply(new DeadNodeElimination(), new PassOptions { NestedGraphs = false }).Count(DeadNodeElimination.RemovedNodes));
        Assert.Equal(1, model.Apply(new DeadNodeElimination()).Count(DeadNodeElimination.RemovedNodes));
        Assert.DoesNotContain(model.Graph.AllNodes(), n => n.Name == "dead_in_branch");
        Assert.Contains(model.Graph.AllNodes(), n => n.Name == "branch_relu");
        ModelWriter.Save(model, temp.Path("rewritten.onnx"), new SaveOptions { Durable = false });

        foreach (bool branch in new[] { true, false })
        {
            TensorData[] inputs =
            [
                InputSynthesizer.Encode("cond", TensorDataType.Bool, [], [branch ? 1 : 0]),
                InputSynthesizer.Encode("x", TensorDataType.Float, [4], [-1.5, 0, 2, 3.25]),
            ];
            var expected = ModelRunner.Run(temp.Path("original.onnx"), inputs, SessionSettings.CpuUnoptimized);
            var actual = ModelRunner.Run(temp.Path("rewritten.onnx"), inputs, SessionSettings.CpuUnoptimized);
            var comparison = TensorComparison.Compare(expected, actual);
            Assert.True(comparison.AllBitwiseEqual, comparison.ToString());
            Assert.Equal(branch ? [0f, 0f, 2f, 3.25f] : [1.5f, -0f, -2f, -3.25f], actual[0].ToSingleArray());
        }
    }

    [Fact]
    public void Progress_ReportsEachGraphAndLoggerHearsEachPass()
    {
        using var model = DivSqrtModel();
        var log = new List<string>();
        var progress = new List<PassProgress>();
        var result = DivSqrtRule().Sequence().Run(new PassContext(model, logger: new ListLogger(log), progress: new SyncProgress(progress)));
        Assert.True(result.Changed);
        Assert.Contains(log, l => l.StartsWith("div-sqrt: changed the model"));
        Assert.Contains(progress, p => p.Pass == "div-sqrt" && p.Graph == "main_graph");
    }

    [Fact]
    public void GraphCheck_NestedGraphReadingAnOuterValueComputedAfterItsHolder_IsAProblem()
    {
        var b = new GraphBuilder();
        var cond = b.Input("cond", TensorDataType.Bool);
        var x = b.Input("x", TensorDataType.Float, 4);
        var late = new Node("", "Abs", [x], ["late"], name: "late");     // appended after the If below
        var body = new Graph("then");
        body.AddOutput(new GraphEditor(body, b.Names).Op("Relu", late.Outputs[0]));
        var other = new Graph("else");
        other.AddOutput(new GraphEditor(other, b.Names).Op("Neg", x));
        var ifNode = b.Editor.AddNode("If", [cond], [GraphEditor.GraphAttribute("then_branch", body), GraphEditor.GraphAttribute("else_branch", other)], name: "if");
        b.Graph.Append(late);
        b.Output(ifNode.Outputs[0]!, TensorDataType.Float, 4);
        using var model = b.ToModel();

        Assert.Contains("before Abs 'late' computes it (in graph 'main_graph', after If 'if')", GraphCheck.FindProblem(model.Graph));
        var result = model.Apply(new TopologicalSort());    // the sort moves the Abs before the If
        Assert.Equal(1, result.Count(TopologicalSort.ReorderedGraphs));
        Assert.Null(GraphCheck.FindProblem(model.Graph));
    }

    internal static Model DivSqrtModel()
    {
        var b = new GraphBuilder();
        var x = b.Input("x", TensorDataType.Float, 2, 8);
        var z = b.Input("z", TensorDataType.Float, 2, 8);
        var y = b.Op("Div", x, b.Op("Sqrt", z));
        b.Output(b.Op("Relu", y), TensorDataType.Float, 2, 8);
        return b.ToModel();
    }

    internal static RewritePass DivSqrtRule() => new("div-sqrt", new RewriteRule("div-sqrt-to-mul-reciprocal",
        P.Op("Div", P.Var("x"), P.Node(["Sqrt"], [P.Var("z")], bindAs: "sqrt")), null,
        (m, c) => c.Add("Mul", [m["x"], c.Add("Reciprocal", [m.Node("sqrt").Output(0)])])));

    private sealed class Throwing(string name) : Pass(name)
    {
        protected override PassResult Execute(PassContext context) => throw new InvalidOperationException("no luck");
    }

    /// <summary>Points the Relu at the output of a node it then removes from the graph.</summary>
    private sealed class Breaking() : GraphPass("breaking", GraphScope.MainGraphOnly)
    {
        protected override void RunOnGraph(Graph graph, PassContext context, PassRecorder recorder)
        {
            var orphan = new Node("", "Neg", [graph.Inputs[0]], ["orphan"], name: "orphan");
            graph.Append(orphan);
            graph.Nodes.Single(n => n.Is("Relu")).ReplaceInput(0, orphan.Outputs[0]);
            var relu = graph.Nodes.Single(n => n.Is("Relu"));
            relu.ReplaceInput(0, null);
            graph.Remove(orphan);
            relu.ReplaceInput(0, orphan.Outputs[0]);
            recorder.Count("breaking");
        }
    }

    private sealed class ListLogger(List<string> lines) : IPassLogger
    {
        public void Log(PassLogLevel level, string pass, string message) => lines.Add($"{pass}: {message}");
    }

    private sealed class SyncProgress(List<PassProgress> items) : IProgress<PassProgress>
    {
        public void Report(PassProgress value) => items.Add(value);
    }
}
