using OnnxOutlierTools.Tensors;

namespace OnnxOutlierTools.Ir;

/// <summary>Where an inserted node came from: the pass (and rule) that added it. Written to the node's
/// metadata_props under <see cref="PassKey"/> and <see cref="RuleKey"/>, so reports read provenance
/// from the graph itself, and kept by every save.</summary>
public sealed record NodeOrigin(string Pass, string? Rule = null)
{
    public const string PassKey = "onnx_outliers.pass";
    public const string RuleKey = "onnx_outliers.rule";

    /// <summary>The origin recorded on <paramref name="node"/>; null for nodes no pass inserted.</summary>
    public static NodeOrigin? Of(Node node) => node.GetMetadata(PassKey) is { } pass ? new NodeOrigin(pass, node.GetMetadata(RuleKey)) : null;

    internal void WriteTo(Node node)
    {
        node.SetMetadata(PassKey, Pass);
        if (Rule is not null) node.SetMetadata(RuleKey, Rule);
    }
}

/// <summary>The one way to add nodes to a graph (in the spirit of onnx-graphsurgeon's
/// <c>graph.layer(op, inputs, outputs, attrs)</c>): <see cref="Add"/> creates a node, inserts it (appended,
/// or before <see cref="Before"/>) and returns its output values. Every name comes from one
/// <see cref="NameAuthority"/> (the model's, for edits), so new names never collide; with
/// <see cref="ExactNames"/> a name that is taken is an error instead of being numbered (generators whose
/// names must be the exporter's). Nodes get <see cref="Origin"/> as provenance when it is set. Graph
/// builders (<see cref="GraphBuilder"/>, the importers' writers) and rewrite rules all add nodes here.</summary>
public sealed class GraphEditor
{
    public GraphEditor(Graph graph, NameAuthority names)
    {
        ArgumentNullException.ThrowIfNull(graph);
        ArgumentNullException.ThrowIfNull(names);
        Graph = graph;
        Names = names;
    }

    public Graph Graph { get; }
    public NameAuthority Names { get; }

    /// <summary>Provenance written to every node added (null: none, as for generated models).</summary>
    public NodeOrigin? Origin { get; init; }

    /// <summary>Nodes are inserted before this node (null: appended at the end).</summary>
    public Node? Before { get; init; }

    /// <summary>A taken node or value name throws instead of being numbered "_1", "_2"...</summary>
    public bool ExactNames { get; init; }

    /// <summary>The name hint of output <c>i</c> of a node named <c>node</c> when none is given
    /// (default "{node}_output_{i}", torch.onnx's spelling).</summary>
    public Func<string, int, string> OutputHint { get; init; } = static (node, i) => $"{node}_output_{i}";

    /// <summary>The same editor inserting before <paramref name="anchor"/>.</summary>
    public GraphEditor InsertingBefore(Node? anchor) => Copy(Origin, anchor);

    /// <summary>The same editor recording <paramref name="origin"/> on the nodes it adds.</summary>
    public GraphEditor WithOrigin(NodeOrigin? origin) => Copy(origin, Before);

    /// <summary>Adds a default-domain node; <paramref name="outputs"/> are the output names (hints unless
    /// <see cref="ExactNames"/>; a null entry is an output not requested; none given: one output named
    /// from the node). Returns the outputs, null where not requested.</summary>
    public IReadOnlyList<Value?> Add(string opType, IEnumerable<Value?> inputs, IEnumerable<Attr>? attributes = null, params string?[] outputs) =>
        AddNode(opType, inputs, attributes, outputs: outputs.Length == 0 ? null : outputs).Outputs;

    /// <summary>Adds a default-domain node with one output and no attributes; returns the output.</summary>
    public Value Op(string opType, params Value?[] inputs) => AddNode(opType, inputs).Outputs[0]!;

    /// <summary>Adds a node. <paramref name="name"/> is the node name (hint; default the op type; "" leaves
    /// the node unnamed); <paramref name="outputs"/> as in <see cref="Add"/>, or <paramref name="outputCount"/>
    /// outputs named by <see cref="OutputHint"/>.</summary>
    public Node AddNode(string opType, IEnumerable<Value?> inputs, IEnumerable<Attr>? attributes = null, string domain = "",
        string? name = null, IReadOnlyList<string?>? outputs = null, int outputCount = 1)
    {
        ArgumentException.ThrowIfNullOrEmpty(opType);
        ArgumentOutOfRangeException.ThrowIfNegative(outputCount);
        string nodeName = name == "" ? "" : Claim(Names.NewNodeName, name ?? opType, "node");
        var outputNames = (outputs ?? Enumerable.Range(0, outputCount).Select(i => (string?)OutputHint(nodeName.Length > 0 ? nodeName : opType, i)).ToArray())
            .Select(n => n is null ? null : Claim(Names.NewValueName, n, "value")).ToArray();
        var attributeList = attributes?.ToArray();
        foreach (var body in attributeList?.SelectMany(a => a.Graphs) ?? [])
            if (body.ParentNode is not null) throw new InvalidOperationException($"graph '{body.Name}' already belongs to {body.ParentNode.Describe()}");
        var node = new Node(domain, opType, inputs, outputNames, attributeList, nodeName);
        foreach (var body in node.Subgraphs) body.ParentNode = node;
        Origin?.WriteTo(node);
        if (Before is null) Graph.Append(node);
        else Graph.InsertBefore(Before, node);
        return node;
    }

    /// <summary>A GRAPH attribute (an If branch, a Loop or Scan body) holding <paramref name="body"/>, a graph
    /// not yet held by a node; <see cref="AddNode"/> makes the new node its parent. The body may read values
    /// of the enclosing graphs.</summary>
    public static Attr GraphAttribute(string name, Graph body)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        ArgumentNullException.ThrowIfNull(body);
        return new Attr(new Onnx.Protobuf.AttributeProto { Name = name, Type = Onnx.Protobuf.AttributeProto.Types.AttributeType.Graph }, [body]);
    }

    /// <summary>A Constant node holding <paramref name="value"/>; returns its output.</summary>
    public Value Constant(Tensor value, string? name = null, string? output = null) =>
        AddNode("Constant", [], [Attr.FromTensor("value", value)], name: name ?? "Constant", outputs: output is null ? null : [output]).Outputs[0]!;

    /// <summary>An initializer of this graph named from <paramref name="name"/>.</summary>
    public Value Initializer(string name, Tensor tensor) => Graph.AddInitializer(Claim(Names.NewValueName, name, "value"), tensor);

    private string Claim(Func<string, string> claim, string wanted, string what)
    {
        string got = claim(wanted);
        if (ExactNames && got != wanted)
            throw new InvalidOperationException($"{what} name '{wanted}' is already taken in graph '{Graph.Name}'");
        return got;
    }

    private GraphEditor Copy(NodeOrigin? origin, Node? before) => new(Graph, Names)
    {
        Origin = origin,
        Before = before,
        ExactNames = ExactNames,
        OutputHint = OutputHint,
    };
}

public static class ModelEditing
{
    /// <summary>An editor for <paramref name="graph"/> (default: the main graph) naming through the model's
    /// <see cref="Model.Names"/>, recording <paramref name="origin"/> on what it adds.</summary>
    public static GraphEditor Edit(this Model model, Graph? graph = null, NodeOrigin? origin = null) =>
        new(graph ?? model.Graph, model.Names) { Origin = origin };
}
