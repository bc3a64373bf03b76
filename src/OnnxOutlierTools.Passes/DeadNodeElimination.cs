using OnnxOutlierTools.Ir;

namespace OnnxOutlierTools.Passes;

/// <summary>Removes nodes none of whose outputs is used (by a node, a nested graph or a graph output),
/// in every graph, until none is left. A node with no outputs at all is kept and reported as skipped:
/// it exists for a reason the graph does not show.</summary>
public sealed class DeadNodeElimination() : GraphPass("dead-node-elimination", rules: [RemovedNodes])
{
    public const string RemovedNodes = "removed-nodes";

    protected override void RunOnGraph(Graph graph, PassContext context, PassRecorder recorder)
    {
        bool removedAny;
        do
        {
            removedAny = false;
            // Reverse order: in a sorted graph a chain of dead nodes goes in one sweep.
            for (int i = graph.Nodes.Count - 1; i >= 0; i--)
            {
                if (i >= graph.Nodes.Count) continue;
                var node = graph.Nodes[i];
                if (node.Outputs.All(o => o is null)) continue;
                if (node.Outputs.Any(o => o is { Uses.Count: > 0 })) continue;
                graph.Remove(node);
                recorder.Count(RemovedNodes);
                removedAny = true;
            }
        } while (removedAny);
        foreach (var node in graph.Nodes)
            if (node.Outputs.All(o => o is null))
                recorder.Skip(RemovedNodes, "no output is requested, kept in case it exists for a side effect", graph, node.Describe());
        // Graph.Remove leaves a removed value's value_info entry; drop those so the saved model declares only live values.
        graph.ValueInfos.RemoveAll(v => v.Producer is { Graph: null });
    }
}

/// <summary>Removes initializers nothing uses, in every graph. One that is also a graph input is part of
/// the model's interface (a caller may feed it) and is kept, reported as skipped.</summary>
public sealed class UnusedInitializerRemoval() : GraphPass("unused-initializer-removal", rules: [RemovedInitializers])
{
    public const string RemovedInitializers = "removed-initializers";

    protected override void RunOnGraph(Graph graph, PassContext context, PassRecorder recorder)
    {
        foreach (var initializer in graph.Initializers.Where(v => v.Uses.Count == 0).ToList())
        {
            if (initializer.IsGraphInput)
            {
                recorder.Skip(RemovedInitializers, "unused, but also a graph input (part of the model's interface)", graph, initializer.Name);
                continue;
            }
            graph.RemoveInitializer(initializer);
            graph.ValueInfos.Remove(initializer);
            recorder.Count(RemovedInitializers);
        }
    }
}

/// <summary>Sorts every graph topologically (stable: an order that is already valid is kept) and then
/// checks it (<see cref="GraphCheck"/>): a cycle, or a node reading a removed node's output, fails the pass.</summary>
public sealed class TopologicalSort() : GraphPass("topological-sort", rules: [ReorderedGraphs])
{
    public const string ReorderedGraphs = "reordered-graphs";

    protected override void RunOnGraph(Graph graph, PassContext context, PassRecorder recorder)
    {
        var before = graph.Nodes.ToArray();
        graph.TopologicalSort();
        if (!before.SequenceEqual(graph.Nodes)) recorder.Count(ReorderedGraphs);
        // Only the main graph's visit checks (it comes last and covers the nested ones).
        if (graph.ParentNode is null && GraphCheck.FindProblem(graph) is { } problem) throw new InvalidOperationException(problem);
    }
}
