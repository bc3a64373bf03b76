using OnnxOutlierTools.Ir;

namespace OnnxOutlierTools.Passes;

/// <summary>Structural checks a pass must not break: in every graph, each node input is defined before the
/// node (by an earlier node of the same graph, a graph input, an initializer, or an enclosing scope) and
/// no input or graph output is a value whose producer was removed.</summary>
public static class GraphCheck
{
    /// <summary>The first problem found, or null when the model is consistent.</summary>
    public static string? FindProblem(Graph main)
    {
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
                    if (ReferenceEquals(producer.Graph, graph) && !seen.Contains(producer))
                        return $"{node.Describe()} in graph '{graph.Name}' reads '{input.Name}' before {producer.Describe()} computes it";
                }
                seen.Add(node);
            }
            foreach (var output in graph.Outputs)
                if (output.Producer is { Graph: null } removed)
                    return $"graph '{graph.Name}' outputs '{output.Name}' of the removed node {removed.Describe()}";
        }
        return null;
    }
}
