using OnnxOutlierTools.Ir;
using OnnxOutlierTools.Tensors;

namespace OnnxOutlierTools.Import.Onnx;

/// <summary>How node outputs are named: torch.onnx's "{node}_output_0" or the genai builder's "{node}/output_0".</summary>
internal enum OutputNaming
{
    Torch,
    GenAi,
}

/// <summary>Appends nodes to a graph with exporter-like names: a node is "{scope}/{OpType}", numbered
/// "_1", "_2"... on repeats within the scope, as torch.onnx numbers them. Nodes go through a
/// <see cref="GraphEditor"/> with exact names: a name the exporter would not write is an error, not renamed.</summary>
internal sealed class GraphWriter
{
    private readonly Dictionary<string, int> _counts = new(StringComparer.Ordinal);
    private readonly Dictionary<string, Value> _constants = new(StringComparer.Ordinal);
    private readonly OutputNaming _naming;

    public GraphWriter(Graph graph, OutputNaming naming)
    {
        _naming = naming;
        var names = NameAuthority.For(graph);
        Editor = new GraphEditor(graph, names) { ExactNames = true, OutputHint = OutputName };
    }

    public Graph Graph => Editor.Graph;
    public GraphEditor Editor { get; }

    /// <summary>A graph input, its name claimed exactly like every other name.</summary>
    public Value Input(string name, TensorDataType type, IEnumerable<Dim> shape)
    {
        if (!Editor.Names.ReserveValueName(name)) throw new InvalidOperationException($"value name '{name}' is already taken in graph '{Graph.Name}'");
        return Graph.AddInput(name, type, shape);
    }

    public string NodeName(string scope, string opType)
    {
        string baseName = $"{scope}/{opType}";
        _counts.TryGetValue(baseName, out int n);
        _counts[baseName] = n + 1;
        return n == 0 ? baseName : $"{baseName}_{n}";
    }

    public string OutputName(string nodeName, int index = 0) =>
        _naming == OutputNaming.Torch ? $"{nodeName}_output_{index}" : $"{nodeName}/output_{index}";

    /// <summary>A default-domain node with one output; <paramref name="output"/> overrides the output's name.</summary>
    public Value Op(string scope, string opType, Value?[] inputs, Attr[]? attributes = null, string? output = null) =>
        Editor.AddNode(opType, inputs, attributes, name: NodeName(scope, opType), outputs: output is null ? null : [output]).Outputs[0]!;

    /// <summary>A node named exactly <paramref name="name"/>; <paramref name="outputs"/> default to one output named by the flavour.</summary>
    public Node Node(string domain, string opType, string name, Value?[] inputs, IReadOnlyList<string?>? outputs = null, params Attr[] attributes) =>
        Editor.AddNode(opType, inputs, attributes, domain, name, outputs);

    /// <summary>A Constant node in <paramref name="scope"/> (one per distinct value and scope).</summary>
    public Value Const(string scope, Tensor value)
    {
        string key = $"{scope}|{value.DataType}|{string.Join(",", value.Dims)}|{Convert.ToHexString(value.Bytes)}";
        if (_constants.TryGetValue(key, out var existing)) return existing;
        var v = Editor.Constant(value, NodeName(scope, "Constant"));
        _constants[key] = v;
        return v;
    }

    public Value Init(string name, Tensor tensor) => Editor.Initializer(name, tensor);

    // ---- small tensors ---------------------------------------------------------------------------

    public static Tensor I64(params long[] values) => ArrayTensor.Create<long>(values, values.Length);
    public static Tensor I64Scalar(long value) => ArrayTensor.Create<long>([value]);
    public static Tensor F32Scalar(float value) => ArrayTensor.Create<float>([value]);

    /// <summary>A scalar of a float type (FLOAT or FLOAT16).</summary>
    public static Tensor Scalar(TensorDataType type, float value) => type switch
    {
        TensorDataType.Float => ArrayTensor.Create<float>([value]),
        TensorDataType.Float16 => ArrayTensor.Create<Half>([(Half)value]),
        _ => throw new NotSupportedException($"scalar of {type.OnnxName()}"),
    };

    /// <summary>The most negative finite value of a float type (torch's finfo(dtype).min for masks).</summary>
    public static float Lowest(TensorDataType type) => type == TensorDataType.Float16 ? (float)Half.MinValue : float.MinValue;

    public static Attr Perm(params long[] perm) => Attr.Ints("perm", perm);
}
