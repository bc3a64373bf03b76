using System.Diagnostics;
using OnnxOutlierTools.Import;
using OnnxOutlierTools.IO;
using OnnxOutlierTools.Ir;
using OnnxOutlierTools.Tensors;

namespace OnnxOutlierTools.Tests.IO;

/// <summary>The name index and the linked node list answer as the scans and the List did, and edits cost
/// the same on a large graph as on a small one. In the non-parallel collection: it times edits.</summary>
[Collection(MemoryMeasurementCollection.Name)]
public class GraphScaleTests
{
    private static Node Identity(Value input, string output) => new("", "Identity", [input], [output]);

    [Fact]
    public void FindValue_FollowsAddsRemovesAndRenames()
    {
        var g = new Graph();
        var x = g.AddInput("x", TensorDataType.Float, [new Dim(4)]);
        Assert.Same(x, g.FindValue("x"));
        var a = Identity(x, "a");
        g.Append(a);
        Assert.Same(a.Outputs[0], g.FindValue("a"));
        a.Outputs[0]!.Name = "a2";
        Assert.Null(g.FindValue("a"));
        Assert.Same(a.Outputs[0], g.FindValue("a2"));
        var w = g.AddInitializer("w", ArrayTensor.Create<float>([1f]));
        Assert.Same(w, g.FindInitializer("w"));
        Assert.Throws<InvalidOperationException>(() => g.AddInitializer("a2", ArrayTensor.Create<float>([1f])));
        g.RemoveInitializer(w);
        Assert.Null(g.FindValue("w"));
        Assert.Null(g.FindInitializer("w"));
        g.Remove(a);
        Assert.Null(g.FindValue("a2"));
        var b = Identity(x, "b");
        g.Append(b);
        var c = b.EnsureOutput(1, new NameAuthority(), "extra");
        Assert.Same(c, g.FindValue("extra"));
        // Renaming a value that is no longer in the graph leaves the index alone.
        a.Outputs[0]!.Name = "b";
        Assert.Same(b.Outputs[0], g.FindValue("b"));
    }

    [Fact]
    public void FindValue_DuplicateNames_ReturnsTheFirstInValueOrder()
    {
        var g = new Graph();
        var x = g.AddInput("x", TensorDataType.Float, [new Dim(4)]);
        var first = Identity(x, "dup");
        var second = Identity(x, "dup");
        g.Append(first);
        g.Append(second);
        Assert.Same(first.Outputs[0], g.FindValue("dup"));
        g.InsertBefore(first, Identity(x, "other"));
        Assert.Same(first.Outputs[0], g.FindValue("dup"));
        g.Remove(first);
        Assert.Same(second.Outputs[0], g.FindValue("dup"));
        // An input named like a node output comes first in Values() order.
        var input = g.AddInput("dup", TensorDataType.Float, [new Dim(4)]);
        Assert.Same(input, g.FindValue("dup"));
        Assert.Equal(g.Values().First(v => v.Name == "dup"), g.FindValue("dup"));
    }

    [Fact]
    public void Nodes_KeepOrderThroughInsertRemoveAndSort()
    {
        var g = new Graph();
        var x = g.AddInput("x", TensorDataType.Float, [new Dim(4)]);
        var a = Identity(x, "a");
        g.Append(a);
        var c = Identity(a.Outputs[0]!, "c");
        g.Append(c);
        var b = Identity(a.Outputs[0]!, "b");
        g.InsertBefore(c, b);
        var first = Identity(x, "first");
        g.InsertBefore(a, first);
        var last = Identity(c.Outputs[0]!, "last");
        g.InsertAfter(c, last);
        Assert.Equal(["first", "a", "b", "c", "last"], g.Nodes.Select(n => n.Outputs[0]!.Name));
        Assert.Equal(5, g.Nodes.Count);
        Assert.Same(b, g.Nodes[2]);
        g.Remove(first);
        Assert.Same(c, g.Nodes[2]);
        Assert.Equal(["a", "b", "c", "last"], g.Nodes.Select(n => n.Outputs[0]!.Name));
        // A consumer placed before its producer is moved after it by the sort, the rest keeps its order.
        g.Remove(last);
        var early = Identity(c.Outputs[0]!, "early");
        g.InsertBefore(a, early);
        g.TopologicalSort();
        Assert.Equal(["a", "b", "c", "early"], g.Nodes.Select(n => n.Outputs[0]!.Name));
        Assert.Same(early, g.Nodes[^1]);
    }

    [Fact]
    public void Nodes_EnumerationSurvivesRemovingTheCurrentNode()
    {
        var g = new Graph();
        var x = g.AddInput("x", TensorDataType.Float, [new Dim(4)]);
        for (int i = 0; i < 6; i++) g.Append(Identity(x, $"n{i}"));
        var seen = new List<string>();
        foreach (var node in g.Nodes)
        {
            seen.Add(node.Outputs[0]!.Name);
            if (node.Outputs[0]!.Name is "n1" or "n2") g.Remove(node);
        }
        Assert.Equal(["n0", "n1", "n2", "n3", "n4", "n5"], seen);
        Assert.Equal(["n0", "n3", "n4", "n5"], g.Nodes.Select(n => n.Outputs[0]!.Name));
        Assert.Equal(4, g.RemoveDeadNodes());
        Assert.Empty(g.Nodes);
    }

    [Fact]
    public void Edits_AfterLoad_SaveTheSameBytesAsBefore()
    {
        using var tmp = new TempFolder();
        using (var model = SyntheticDecoder.CreateModel(SyntheticDecoder.TinyConfig, seed: 3))
            ModelWriter.Save(model, Path.Combine(tmp.FullPath, "a.onnx"));
        using var loaded = ModelReader.Load(Path.Combine(tmp.FullPath, "a.onnx"));
        var g = loaded.Graph;
        // Insert and remove probes everywhere, add and remove initializers: the file must not change.
        var probes = g.Nodes.Where((_, i) => i % 3 == 0).ToList().Select((anchor, i) =>
        {
            var probe = Identity(anchor.Outputs[0]!, $"probe_{i}");
            g.InsertAfter(anchor, probe);
            return probe;
        }).ToList();
        var inits = Enumerable.Range(0, 20).Select(i => g.AddInitializer($"extra_{i}", ArrayTensor.Create<float>([i]))).ToList();
        foreach (var p in probes) g.Remove(p);
        foreach (var v in inits) g.RemoveInitializer(v);
        ModelWriter.Save(loaded, Path.Combine(tmp.FullPath, "b.onnx"));
        Assert.Equal(File.ReadAllBytes(Path.Combine(tmp.FullPath, "a.onnx")), File.ReadAllBytes(Path.Combine(tmp.FullPath, "b.onnx")));
    }

    /// <summary>Generous: 16x the nodes may cost at most 8x per edit (O(N) edits would cost 16x); best of 3.</summary>
    [Fact]
    public void Edits_DoNotSlowDownWithGraphSize()
    {
        double Cost(int nodes)
        {
            using var model = SyntheticGraph.Create(nodes);
            var g = model.Graph;
            var anchors = g.Nodes.Where((_, i) => i % 10 == 5).Take(2000).ToList();
            g.FindValue("x"); // the index is built once per graph, on the first lookup (O(N), not timed)
            double best = double.MaxValue;
            for (int round = 0; round < 3; round++)
            {
                var sw = Stopwatch.StartNew();
                var added = new List<(Node, Value)>();
                foreach (var (anchor, i) in anchors.Select((a, i) => (a, i)))
                {
                    var probe = Identity(anchor.Outputs[0]!, $"p{round}_{i}");
                    g.InsertAfter(anchor, probe);
                    var init = g.AddInitializer($"i{round}_{i}", ArrayTensor.Create<float>([1f]));
                    Assert.Same(init, g.FindValue($"i{round}_{i}"));
                    added.Add((probe, init));
                }
                foreach (var (probe, init) in added) { g.Remove(probe); g.RemoveInitializer(init); }
                best = Math.Min(best, sw.Elapsed.TotalSeconds);
            }
            return best;
        }
        Cost(20_000); // JIT
        double small = Math.Max(Cost(20_000), 1e-3);
        double large = Cost(320_000);
        Assert.True(large < 8 * small, $"edits on 320k nodes took {large:F3} s, on 20k nodes {small:F3} s");
    }
}
