using OnnxOutlierTools.Ir;
using OnnxOutlierTools.Tensors;

namespace OnnxOutlierTools.Structure.Patterns;

/// <summary>The pattern vocabulary. Reads like the graph it describes:
/// <c>P.Op("Mul", P.Var("x"), P.Op("Sigmoid", P.Var("x")))</c> is SiLU(x).</summary>
public static class P
{
    /// <summary>Any value, bound to <paramref name="name"/>.</summary>
    public static Pattern Var(string name) => new VarPattern(name);

    /// <summary>Any value satisfying <paramref name="predicate"/> (described by <paramref name="what"/> in traces).</summary>
    public static Pattern Var(string name, Func<Value, bool> predicate, string what) => new VarPattern(name, predicate, what);

    /// <summary>An initializer or Constant (optionally behind Cast), bound to the defining value.</summary>
    public static Pattern Const(string? name = null) => new ConstPattern(name, null, null);

    public static Pattern Const(string? name, Func<Tensor, bool> predicate, string what) => new ConstPattern(name, predicate, what);

    /// <summary>A one-element constant equal to <paramref name="value"/> (within a relative 1e-3).</summary>
    public static Pattern Scalar(double value, string? name = null) =>
        new ConstPattern(name, t => ConstantResolver.Scalar(t) is double d && Math.Abs(d - value) <= 1e-3 * Math.Max(1, Math.Abs(value)), $"the scalar {value}");

    /// <summary>A one-element constant, any value.</summary>
    public static Pattern AnyScalar(string? name = null) => new ConstPattern(name, t => t.ElementCount == 1, "a scalar");

    /// <summary>A node of <paramref name="opType"/> in the default domain.</summary>
    public static Pattern Op(string opType, params Pattern?[] inputs) => new OpPattern([opType], "", inputs, false, null, 0, null, null);

    /// <summary>A commutative binary op (Add, Mul): inputs match in either order.</summary>
    public static Pattern Commuted(string opType, Pattern a, Pattern b) => new OpPattern([opType], "", [a, b], true, null, 0, null, null);

    /// <summary>Full form: op types, domain, inputs (null = don't care), node binding name, output index, check.</summary>
    public static Pattern Node(string[] opTypes, Pattern?[] inputs, string domain = "", string? bindAs = null, int output = 0,
        bool commutative = false, Func<Node, bool>? check = null, string? checkText = null) =>
        new OpPattern(opTypes, domain, inputs, commutative, bindAs, output, check, checkText);

    /// <summary>The output of a role found earlier (<paramref name="lookup"/> returns it for its output value), whose
    /// input (<paramref name="inputOf"/>) matches <paramref name="input"/>; the output is bound to <paramref name="name"/>.</summary>
    public static Pattern Role<T>(string name, Func<Value, T?> lookup, Func<T, Value?> inputOf, Func<T, IEnumerable<Node>> nodesOf, Pattern input, string what)
        where T : class => new RolePattern<T>(name, lookup, inputOf, nodesOf, input, what);

    public static Pattern AnyOf(params Pattern[] alternatives) => new AnyOfPattern(alternatives);

    /// <summary>A shared subexpression: matched at its first occurrence, then required to be the same value.</summary>
    public static Pattern Bind(string name, Pattern inner) => new BindPattern(name, inner);

    /// <summary><paramref name="inner"/> directly or behind Cast nodes (exporters insert float->float Casts).</summary>
    public static Pattern MaybeCast(Pattern inner) => new ThroughPattern(["Cast"], inner);

    /// <summary><paramref name="inner"/> directly or behind any of <paramref name="opTypes"/> (single-input pass-through ops).</summary>
    public static Pattern Through(Pattern inner, params string[] opTypes) => new ThroughPattern(opTypes, inner);
}
