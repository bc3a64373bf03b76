namespace OnnxOutlierTools.Quantization.Common;

/// <summary>The schemes <c>quantize --scheme NAME</c> knows, by name. Built-in schemes are listed in the static constructor;
/// registering another is one line (<c>QuantizationSchemes.Register(new MyScheme())</c>), there or at start-up.</summary>
public static class QuantizationSchemes
{
    private static readonly Dictionary<string, IQuantizationScheme> ByName = new(StringComparer.Ordinal);
    private static readonly Lock Gate = new();

    /// <summary>Every scheme name the CLI accepts, registered or not yet (an unregistered one says "not available").</summary>
    public static readonly IReadOnlyList<string> KnownNames = ["w8a8-static", "w8a8-dynamic", "int4-rtn", "int4-awq"];

    static QuantizationSchemes()
    {
        // Built-in schemes, one line each.
        Register(new W8A8.W8A8Scheme(W8A8.ActivationMode.StaticPerTensor));
        Register(new W8A8.W8A8Scheme(W8A8.ActivationMode.DynamicPerToken));
        Register(new Int4.Int4Scheme(activationAware: false));
        Register(new Int4.Int4Scheme(activationAware: true));
    }

    /// <summary>Adds (or replaces) the scheme under its <see cref="IQuantizationScheme.Name"/>.</summary>
    public static void Register(IQuantizationScheme scheme)
    {
        ArgumentNullException.ThrowIfNull(scheme);
        lock (Gate) ByName[scheme.Name] = scheme;
    }

    public static bool TryGet(string name, out IQuantizationScheme scheme)
    {
        lock (Gate) return ByName.TryGetValue(name, out scheme!);
    }

    /// <summary>The registered names, sorted.</summary>
    public static IReadOnlyList<string> Names
    {
        get { lock (Gate) return ByName.Keys.Order(StringComparer.Ordinal).ToArray(); }
    }
}
