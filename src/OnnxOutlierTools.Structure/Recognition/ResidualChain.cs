using OnnxOutlierTools.Ir;
using OnnxOutlierTools.Structure.Patterns;
using OnnxOutlierTools.Structure.Roles;
using OnnxOutlierTools.Structure.Rules;

namespace OnnxOutlierTools.Structure.Recognition;

/// <summary>One point where a sublayer's output rejoins the residual stream: <see cref="StreamIn"/> + <see cref="Branch"/>
/// = <see cref="StreamOut"/>, by an Add or a fused skip norm (<see cref="SkipNorm"/>). <see cref="Sublayer"/> holds the
/// nodes that compute the branch from the stream (bounded by the stream's producer).</summary>
internal sealed record StreamJoin(Value StreamIn, Value Branch, Node Node, TensorRef StreamOut, NormRole? SkipNorm, IReadOnlySet<Node> Sublayer);

/// <summary>Follows the residual stream from its start (the embedding output, or the hidden-state input of a decoder
/// fed <c>inputs_embeds</c>) through every residual join, whatever the sublayers between them compute: the spine the
/// generic fallback hangs blocks on when a token mixer or FFN is of a kind no rule knows.</summary>
internal sealed class ResidualChain
{
    private readonly Graph _graph;
    private readonly Dictionary<Node, int> _position;
    private readonly Dictionary<Node, NormRole> _skipNorms = [];
    private readonly Dictionary<Node, List<Value>> _outerInputs = [];

    public ResidualChain(Graph graph, Dictionary<Node, int> position, IEnumerable<NormRole> norms)
    {
        (_graph, _position) = (graph, position);
        foreach (var n in norms) if (n.Skip is not null) _skipNorms.TryAdd(n.OutputNode, n);
    }

    private int Pos(Node node) => _position.GetValueOrDefault(node, -1);

    /// <summary>The longest chain of joins from any of <paramref name="starts"/>.</summary>
    public List<StreamJoin> Longest(IEnumerable<Value> starts)
    {
        var best = new List<StreamJoin>();
        foreach (var start in starts.Distinct())
        {
            var chain = From(start);
            if (chain.Count > best.Count) best = chain;
        }
        return best;
    }

    public List<StreamJoin> From(Value start)
    {
        var joins = new List<StreamJoin>();
        var stream = start;
        var visited = new HashSet<Value>();
        while (visited.Add(stream) && Next(stream) is { } join)
        {
            joins.Add(join);
            if (join.StreamOut.Value is not { } next) break;
            stream = next;
        }
        return joins;
    }

    /// <summary>The first join (in graph order) that reads <paramref name="stream"/> directly and adds a branch
    /// computed from it.</summary>
    private StreamJoin? Next(Value stream)
    {
        StreamJoin? best = null;
        foreach (var use in stream.Uses)
        {
            if (use.Node is not { } node || node.Graph != _graph || use.Index > 1) continue;
            if (best is not null && Pos(node) >= Pos(best.Node)) continue;
            Value? branch = null;
            TensorRef? sum = null;
            NormRole? skip = null;
            if (node.Is("Add") && node.Output(0) is { } o && node.Input(1 - use.Index) is { } other && ConstantResolver.Resolve(other) is null)
                (branch, sum) = (other, TensorRef.Of(o));
            else if (_skipNorms.TryGetValue(node, out var sn) && node.Input(1 - use.Index) is { } skipIn)
                (branch, sum, skip) = (skipIn, sn.ResidualSum, sn);
            if (branch is null || sum is null || ReferenceEquals(branch, stream)) continue;
            if (Sublayer(stream, branch) is not { } nodes) continue;
            best = new StreamJoin(stream, branch, node, sum, skip, nodes);
        }
        return best;
    }

    /// <summary>The nodes between <paramref name="stream"/> and <paramref name="branch"/> (ancestors of the branch that
    /// come after the stream's producer), or null when the branch does not depend on the stream.</summary>
    private HashSet<Node>? Sublayer(Value stream, Value branch)
    {
        int floor = stream.Producer is { } p ? Pos(p) : -1;
        var nodes = new HashSet<Node>();
        var seen = new HashSet<Value>();
        var queue = new Queue<Value>();
        queue.Enqueue(branch);
        bool reaches = false;
        while (queue.Count > 0)
        {
            var v = queue.Dequeue();
            if (!seen.Add(v)) continue;
            // A skip norm emits the stream (its residual sum) and the normalized stream next to it: reading the latter is
            // reading the stream.
            if (ReferenceEquals(v, stream) || v.Producer is { } sp && sp == stream.Producer && _skipNorms.ContainsKey(sp)) { reaches = true; continue; }
            if (v.Producer is not { } node || node.Graph != _graph || Pos(node) <= floor || !nodes.Add(node)) continue;
            foreach (var input in InputsOf(node)) queue.Enqueue(input);
        }
        return reaches ? nodes : null;
    }

    /// <summary>A node's inputs, with the outer-scope values its nested graphs (If branches, Scan/Loop bodies) read.</summary>
    public IEnumerable<Value> InputsOf(Node node)
    {
        foreach (var i in node.Inputs) if (i is not null) yield return i;
        if (!node.Subgraphs.Any()) yield break;
        if (!_outerInputs.TryGetValue(node, out var outer))
        {
            var inner = node.Subgraphs.SelectMany(g => g.SelfAndSubgraphs()).ToHashSet();
            outer = inner.SelectMany(g => g.Nodes).SelectMany(n => n.Inputs)
                .Where(v => v is not null && !inner.Contains(v.Graph)).Select(v => v!).Distinct().ToList();
            _outerInputs[node] = outer;
        }
        foreach (var v in outer) yield return v;
    }
}
