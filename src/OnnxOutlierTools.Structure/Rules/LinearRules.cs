using OnnxOutlierTools.Ir;
using OnnxOutlierTools.Structure.Patterns;
using OnnxOutlierTools.Structure.Roles;

namespace OnnxOutlierTools.Structure.Rules;

/// <summary>Linear layers: MatMul with a constant weight (directly, behind Cast, or behind a Transpose of an
/// [out, in] weight), with or without a bias Add; MatMul with one slice of a stacked weight picked by a Gather (Qwen3-TTS's
/// per-step LM heads); Gemm (transB); MatMulNBits (int4/int8, flagged quantized).</summary>
public static class LinearRules
{
    private static Pattern Weight => P.AnyOf(P.Const("w"), P.Node(["Transpose"], [P.Const("w")], bindAs: "transpose", check: IsMatrixTranspose, checkText: "a 2-D transpose"));

    private static Pattern MatMul => P.Node(["MatMul"], [P.Var("x"), Weight], bindAs: "mm", check: n => n.Outputs.Count == 1, checkText: "one output");

    // One slice of a stacked [count, out, in] (or [count, in, out]) initializer, picked by Gather(stacked, index).
    private static Pattern Selected => P.Node(["Gather"], [P.Const("w"), P.Var("index")], bindAs: "select");

    private static Pattern SelectedWeight => P.AnyOf(Selected, P.Node(["Transpose"], [Selected], bindAs: "transpose", check: IsMatrixTranspose, checkText: "a 2-D transpose"));

    public static IReadOnlyList<Rule<LinearRole>> All { get; } =
    [
        new("MatMul+BiasAdd", P.Node(["Add"], [MatMul, P.Const("b")], commutative: true, bindAs: "add"), CheckBias, m => BuildMatMul(m, bias: true)),
        new("MatMul", MatMul, CheckWeight, m => BuildMatMul(m, bias: false)),
        new("MatMul(selected weight)", P.Node(["MatMul"], [P.Var("x"), SelectedWeight], bindAs: "mm", check: n => n.Outputs.Count == 1, checkText: "one output"),
            CheckSelection, BuildSelected),
        new("Gemm", P.Node(["Gemm"], [P.Var("x"), P.Const("w")], bindAs: "gemm", check: n => n.GetInt("transA", 0) == 0, checkText: "transA = 0"), CheckWeight, BuildGemm),
        new("MatMulNBits", P.Node(["MatMulNBits"], [P.Var("x"), P.Const("w")], "com.microsoft", bindAs: "nbits"), null, BuildNBits),
        .. QuantizedLinearRules.All,
    ];

    /// <summary>All linears in the matcher's graph, one per MatMul/Gemm node (with its bias when it has one).</summary>
    public static List<LinearRole> Find(Matcher matcher)
    {
        var seen = new HashSet<Node>();
        return matcher.ApplyFirst(All).Where(l => seen.Add(l.Node)).ToList();
    }

    private static bool IsMatrixTranspose(Node node) =>
        node.GetAttribute("perm") is not { } perm || perm.AsInts() is [1, 0];

    private static Check CheckWeight(Match m)
    {
        var w = ConstantResolver.Resolve(m["w"])?.Tensor;
        return Check.Require(w is { Dims.Count: 2 }, "the weight is not a 2-D matrix", m["w"]);
    }

    private static Check CheckBias(Match m)
    {
        var weight = CheckWeight(m);
        if (!weight.Ok) return weight;
        var b = ConstantResolver.Resolve(m["b"])?.Tensor;
        var (_, outFeatures) = Features(m);
        return Check.Require(b is not null && b.Dims.Count == 1 && b.Dims[0] == outFeatures, "the added constant is not a bias of the output width", m["b"]);
    }

    /// <summary>A rank-3 stack indexed by one scalar along its first axis: each pick is a 2-D weight.</summary>
    private static Check CheckSelection(Match m)
    {
        var w = ConstantResolver.Resolve(m["w"])?.Tensor;
        if (w is not { Dims.Count: 3 }) return Check.Fail("the selected-from constant is not a stack of 2-D weights (rank 3)", m["w"]);
        var gather = m.Node("select");
        if (gather.GetInt("axis", 0) is not (0 or -3)) return Check.Fail("the Gather does not pick along the stack's first axis", m["w"]);
        var index = m["index"];
        bool scalar = ConstantResolver.Resolve(index)?.Tensor is { } c ? c.Dims.Count == 0 : index.Shape is { Count: 0 };
        return Check.Require(scalar, "the index is not a scalar (the pick would keep the stack axis)", index);
    }

    private static LinearRole BuildSelected(Match m)
    {
        var mm = m.Node("mm");
        var gather = m.Node("select");
        var dims = ConstantResolver.Resolve(m["w"])!.Tensor.Dims;
        bool transposed = m.Has("transpose");
        var index = m["index"];
        var constantIndex = ConstantResolver.Resolve(index)?.Tensor is { } c ? ConstantResolver.Scalar(c) : null;
        return new LinearRole
        {
            Form = LinearForm.MatMul, Node = mm, Input = m["x"], Output = m.Root, Weight = m["w"],
            Layout = transposed ? WeightLayout.OutIn : WeightLayout.InOut,
            InFeatures = transposed ? dims[2] : dims[1], OutFeatures = transposed ? dims[1] : dims[2],
            WeightPath = transposed ? [m.Node("transpose")] : [],
            Selection = new WeightSelection
            {
                Stacked = m["w"], Gather = gather, Index = index, Axis = 0, Count = dims[0],
                IndexValue = constantIndex is double d ? (long)d : null,
            },
        };
    }

    private static (long In, long Out) Features(Match m)
    {
        var dims = ConstantResolver.Resolve(m["w"])!.Tensor.Dims;
        return m.Has("transpose") ? (dims[1], dims[0]) : (dims[0], dims[1]);
    }

    private static LinearRole BuildMatMul(Match m, bool bias)
    {
        var mm = m.Node("mm");
        var (inF, outF) = Features(m);
        var transpose = m.TryNode("transpose");
        var path = new List<Node>();
        if (transpose is not null) path.Add(transpose);
        path.AddRange(ConstantResolver.Resolve(transpose?.Input(0) ?? mm.Input(1)!)!.PassThrough);
        return new LinearRole
        {
            Form = LinearForm.MatMul, Node = mm, Input = m["x"], Output = m.Root, Weight = m["w"],
            Layout = m.Has("transpose") ? WeightLayout.OutIn : WeightLayout.InOut,
            Bias = bias ? m["b"] : null, BiasNode = bias ? m.Node("add") : null, InFeatures = inF, OutFeatures = outF, WeightPath = path,
        };
    }

    private static LinearRole BuildGemm(Match m)
    {
        var gemm = m.Node("gemm");
        var dims = ConstantResolver.Resolve(m["w"])!.Tensor.Dims;
        bool transB = gemm.GetInt("transB", 0) != 0;
        var bias = gemm.Input(2) is { } c && ConstantResolver.Resolve(c) is { } b ? b.Value : null;
        return new LinearRole
        {
            Form = LinearForm.Gemm, Node = gemm, Input = m["x"], Output = m.Root, Weight = m["w"],
            Layout = transB ? WeightLayout.OutIn : WeightLayout.InOut, Bias = bias,
            InFeatures = transB ? dims[1] : dims[0], OutFeatures = transB ? dims[0] : dims[1],
            WeightPath = ConstantResolver.Resolve(gemm.Input(1)!)!.PassThrough,
        };
    }

    private static LinearRole BuildNBits(Match m)
    {
        var node = m.Node("nbits");
        var bias = node.Input(5) is { } c && ConstantResolver.Resolve(c) is { } b ? b.Value : null;
        return new LinearRole
        {
            Form = LinearForm.MatMulNBits, Node = node, Input = m["x"], Output = m.Root, Weight = m["w"], Layout = WeightLayout.OutIn,
            Bias = bias, Quantized = true, InFeatures = node.GetInt("K", 0), OutFeatures = node.GetInt("N", 0),
        };
    }
}
