using OnnxOutlierTools.Ir;

namespace OnnxOutlierTools.Passes;

/// <summary>Structural checks a pass must not break: in every graph, each node input is defined before the
/// node: by an earlier node of the same graph, a graph input, an initializer, or an enclosing graph, where
/// the producer must then come before the node holding the nested graph; and no input or graph output is
/// a value whose producer was removed.</summary>
public static class GraphCheck
{
    /// <summary>The first problem found, or null when the model is consistent.</summary>
    public static string? FindProblem(Graph main)
    {
        var positions = new Dictionary<Graph, Dictionary<Node, int>>();
        foreach (var graph in main.SelfAndSubgraphs())
        {
            var seen = new HashSet<Node>();
            foreach (var node in graph.Nodes)
            {
                foreach (var input in node.Inputs)
                {
                    if (input?.Producer is not { } producer) continue;
                    if (producer.Graph is null)
                        return $"{node.Describe()} in graph '{graph.Name}' reads '{input.Name}' of the removed node {producer.Describe()}";
                    if (ReferenceEquals(producer.Graph, graph))
                    {
                        if (!seen.Contains(producer))
                            return $"{node.Describe()} in graph '{graph.Name}' reads '{input.Name}' before {producer.Describe()} computes it";
                    }
                    else if (HolderIn(graph, producer.Graph) is not { } holder)
                        return $"{node.Describe()} in graph '{graph.Name}' reads '{input.Name}' of {producer.Describe()}, which is in no enclosing graph";
                    else if (Position(positions, producer.Graph, producer) >= Position(positions, producer.Graph, holder))
                        return $"{node.Describe()} in graph '{graph.Name}' reads '{input.Name}' before {producer.Describe()} computes it (in graph '{producer.Graph.Name}', after {holder.Describe()})";
                }
                seen.Add(node);
            }
            foreach (var output in graph.Outputs)
                if (output.Producer is { Graph: null } removed)
                    return $"graph '{graph.Name}' outputs '{output.Name}' of the removed node {removed.Describe()}";
        }
        return null;
    }

    /// <summary>The node of <paramref name="outer"/> that (through any depth of nesting) holds <paramref name="inner"/>.</summary>
    private static Node? HolderIn(Graph inner, Graph outer)
    {
        for (var holder = inner.ParentNode; holder?.Graph is { } g; holder = g.ParentNode)
            if (ReferenceEquals(g, outer)) return holder;
        return null;
    }

    private static int Position(Dictionary<Graph, Dictionary<Node, int>> positions, Graph graph, Node node)
    {
        if (!positions.TryGetValue(graph, out var map))
        {
            map = [];
            for (int i = 0; i < graph.Nodes.Count; i++) map[graph.Nodes[i]] = i;
            positions[graph] = map;
        }
        return map[node];
    }
}
