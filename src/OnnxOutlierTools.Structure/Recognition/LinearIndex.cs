using OnnxOutlierTools.Ir;
using OnnxOutlierTools.Structure.Roles;
using OnnxOutlierTools.Structure.Rules;

namespace OnnxOutlierTools.Structure.Recognition;

/// <summary>The recognized linear layers of a graph, findable by output (with or without bias) and by node.</summary>
internal sealed class LinearIndex
{
    private readonly Dictionary<Value, LinearRole> _byOutput = [];
    private readonly Dictionary<Node, LinearRole> _byNode = [];

    public LinearIndex(IEnumerable<LinearRole> linears)
    {
        foreach (var l in linears)
        {
            if (_byNode.ContainsKey(l.Node)) continue;
            All.Add(l);
            _byNode[l.Node] = l;
            _byOutput[l.Output] = l;
            if (l.Node.Output(0) is { } raw) _byOutput.TryAdd(raw, l);
        }
    }

    public List<LinearRole> All { get; } = [];

    /// <summary>The linear producing <paramref name="value"/> (looking through layout ops).</summary>
    public LinearRole? ByOutput(Value value) =>
        _byOutput.GetValueOrDefault(value) ?? _byOutput.GetValueOrDefault(GraphWalk.Upstream(value));

    public LinearRole? ByNode(Node node) => _byNode.GetValueOrDefault(node);

    public void Add(LinearRole role)
    {
        All.Add(role);
        _byNode.TryAdd(role.Node, role);
    }

    /// <summary>Linears that read <paramref name="value"/> (looking through layout ops).</summary>
    public IEnumerable<LinearRole> ConsumersOf(Value value) =>
        GraphWalk.Consumers(value).Select(c => _byNode.GetValueOrDefault(c.Node)).Where(l => l is not null && GraphWalk.SameTensor(l.Input, value)).Distinct()!;
}
