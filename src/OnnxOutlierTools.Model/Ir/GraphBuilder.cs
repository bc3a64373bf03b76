using OnnxOutlierTools.Tensors;

namespace OnnxOutlierTools.Ir;

/// <summary>A new graph from scratch: inputs, initializers, nodes appended in order (through a
/// <see cref="GraphEditor"/>, outputs named "{node}_out{i}"), with unique names from one <see cref="NameAuthority"/>.</summary>
public sealed class GraphBuilder
{
    private readonly NameAuthority _names = new();

    public GraphBuilder(string name = "main_graph")
    {
        Graph = new Graph(name);
        Editor = new GraphEditor(Graph, _names) { OutputHint = static (node, i) => $"{node}_out{i}" };
    }

    public Graph Graph { get; }
    public NameAuthority Names => _names;

    /// <summary>The editor every node goes through (for nodes this class has no shorthand for).</summary>
    public GraphEditor Editor { get; }

    /// <summary>A graph input; dims are numbers (long/int) or symbolic names (string).</summary>
    public Value Input(string name, TensorDataType type, params object[] dims)
    {
        _names.ReserveValueName(name);
        return Graph.AddInput(name, type, dims.Select(ToDim));
    }

    public Value Initializer(string name, Tensor tensor) => Editor.Initializer(name, tensor);

    public Value Initializer<T>(string name, T[] values, params long[] dims) where T : unmanaged =>
        Initializer(name, ArrayTensor.Create<T>(values, dims.Length == 0 ? [values.Length] : dims));

    /// <summary>A scalar initializer (shape []).</summary>
    public Value Scalar<T>(string name, T value) where T : unmanaged => Initializer(name, ArrayTensor.Create<T>([value]));

    /// <summary>Appends a default-domain node with one output; returns the output.</summary>
    public Value Op(string opType, params Value?[] inputs) => Node(opType, inputs)[0];

    /// <summary>Appends a node; returns its outputs (null entries for outputs not requested).</summary>
    public IReadOnlyList<Value> Node(string opType, IEnumerable<Value?> inputs, IEnumerable<Attr>? attributes = null, string domain = "",
        int outputs = 1, string? name = null, IReadOnlyList<string?>? outputNames = null)
        => Editor.AddNode(opType, inputs, attributes, domain, name ?? opType, outputNames, outputs).Outputs.Select(o => o!).ToList();

    /// <summary>Marks a value as a graph output with a declared type.</summary>
    public Value Output(Value value, TensorDataType type, params object[] dims)
    {
        value.SetTensorType(type, dims.Select(ToDim));
        Graph.ValueInfos.Remove(value);
        Graph.AddOutput(value);
        return value;
    }

    /// <summary>Wraps the graph in a model with the given opset imports (default: ai.onnx 17).</summary>
    public Model ToModel(long irVersion = 8, params OpsetId[] opsets)
    {
        var model = new Model(Graph, irVersion) { ProducerName = "onnx-outliers" };
        if (opsets.Length == 0) model.OpsetImports.Add(new OpsetId("", 17));
        else model.OpsetImports.AddRange(opsets);
        return model;
    }

    private static Dim ToDim(object d) => d switch
    {
        long l => new Dim(l),
        int i => new Dim(i),
        string s => Dim.Symbolic(s),
        _ => throw new ArgumentException($"dimension must be a number or a name, got {d}"),
    };
}
