using OnnxOutlierTools.Ir;
using OnnxOutlierTools.Passes;
using OnnxOutlierTools.Structure.Recognition;
using OnnxOutlierTools.Structure.Roles;

namespace OnnxOutlierTools.Quantization.Int4;

/// <summary>What an int4 quantization did: per linear, the pass result, and the opset conversion lines (blocked form).</summary>
public sealed record Int4Report(Int4Settings Settings, IReadOnlyList<Int4LinearOutcome> Linears, PassResult Pass, IReadOnlyList<string> OpsetChanges)
{
    public int QuantizedCount => Linears.Count(l => l.Quantized);

    /// <summary>One line per linear for the user, then the opset changes.</summary>
    public IReadOnlyList<string> Lines() =>
        Linears.Select(l => l.Quantized ? $"{l.Role}: int4 [{l.InFeatures}->{l.OutFeatures}] ({l.Weight})" : $"{l.Role}: kept in float ({l.Reason})")
            .Concat(OpsetChanges).ToList();
}

/// <summary>The entry point of int4 weight-only quantization: <c>Int4Quantizer.Quantize(model, new Int4Settings(...))</c>
/// edits <paramref name="model"/> in place (round-to-nearest, <see cref="Int4Settings"/>); save it with ModelWriter, the
/// int4 tensors are computed while they are written. For AWQ, fold the scales first (<see cref="Awq.AwqQuantizer"/>).</summary>
public static class Int4Quantizer
{
    public const string MetadataKey = "onnx_outliers.quantization";

    /// <param name="structure">The structure recognized on <paramref name="model"/> (recognized here when null).</param>
    /// <param name="display">The model's name in messages (default its source path).</param>
    /// <exception cref="Int4QuantizationException">Bad input: structure not recognized, no linear to quantize, an opset the
    /// blocked form cannot reach.</exception>
    public static Int4Report Quantize(Model model, Int4Settings settings, ModelStructure? structure = null, string? display = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(settings);
        display ??= model.SourcePath ?? model.Graph.Name;
        if (structure is null)
        {
            var recognition = StructureRecognizer.Recognize(model);
            structure = recognition.Structure ?? throw new Int4QuantizationException($"{display}: no transformer structure recognized ({recognition.Message}); int4 quantizes the block linears");
        }
        var pass = new Int4QuantizePass(structure, settings);
        if (!pass.Candidates.Any(c => c.Eligible))
        {
            string why = pass.Candidates.Count == 0 ? "no block linears were recognized"
                : string.Join("; ", pass.Candidates.Select(c => $"{c.Role}: {c.SkipReason}").Distinct().Take(3));
            throw new Int4QuantizationException($"{display}: no linear can be quantized to int4 ({why})");
        }
        IReadOnlyList<string> opset = [];
        if (settings.Format == Int4Format.BlockedDequantize) opset = Opset21Upgrade.Apply(model, display);
        else model.RequireOpset("com.microsoft", 1);
        PassResult result;
        try { result = model.Apply(pass); }
        catch (PassException ex) when (ex.InnerException is Int4QuantizationException inner) { throw new Int4QuantizationException($"{display}: {inner.Message}", ex); }
        model.Metadata.RemoveAll(m => m.Key == MetadataKey);
        model.Metadata.Add(new(MetadataKey, settings.ToString()));
        return new Int4Report(settings, pass.Outcomes, result, opset);
    }
}
