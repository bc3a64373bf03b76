using OnnxOutlierTools.Analysis;
using OnnxOutlierTools.Calibration;
using OnnxOutlierTools.IO;
using OnnxOutlierTools.Ir;
using OnnxOutlierTools.Passes;
using OnnxOutlierTools.Probes;
using OnnxOutlierTools.Runtime;
using OnnxOutlierTools.Structure.Recognition;
using OnnxOutlierTools.Structure.Roles;

namespace OnnxOutlierTools.Cli.Analyze;

/// <summary>A model ready to be calibrated: loaded, recognized, probed in memory (the file is never written), with the
/// manifest of its probes. A decoder nested in a BeamSearch node is taken out as a model of its own first.</summary>
public sealed class ProbedModel : IDisposable
{
    private readonly Model _loaded;

    private ProbedModel(Model loaded, Model probed, string path, ModelStructure structure, ProbeManifest manifest, PassResult result, string? note)
    {
        Result = result;
        _loaded = loaded;
        Model = probed;
        Path = path;
        Structure = structure;
        Manifest = manifest;
        Note = note;
    }

    /// <summary>The model that carries the probes (the loaded one, or the decoder taken out of it).</summary>
    public Model Model { get; }
    public string Path { get; }
    /// <summary>The structure recognized in <see cref="Model"/> (its roles are values of the probed graph).</summary>
    public ModelStructure Structure { get; }
    public ProbeManifest Manifest { get; }
    /// <summary>The probe pass's counts per kind and skipped points.</summary>
    public PassResult Result { get; }
    /// <summary>A line for the user when the probed model is not the file itself (a nested decoder).</summary>
    public string? Note { get; }

    /// <summary>Loads, recognizes and probes <paramref name="modelPath"/>. Throws <see cref="StructureNotRecognizedException"/>
    /// when no transformer blocks are found.</summary>
    public static ProbedModel Create(string modelPath, ProbeSettings settings, string? label = null)
    {
        var model = ModelReader.Load(modelPath);
        try
        {
            var recognition = StructureRecognizer.Recognize(model);
            if (recognition.Structure is not { } structure) throw new StructureNotRecognizedException(modelPath, recognition);
            var target = model;
            string? note = null;
            if (structure.NestedIn is not null)
            {
                var holder = structure.Graph.ParentNode!;
                if (!holder.OpType.EndsWith("Search", StringComparison.Ordinal) && holder.OpType != "Sampling")
                    throw new CalibrationException($"{modelPath}: the blocks are in {structure.NestedIn}; probes are graph outputs, so they " +
                        "cannot be fetched from inside an If branch (a merged decoder): calibrate the decoder model without the merged If " +
                        "(Optimum's decoder_model.onnx) instead");
                target = NestedDecoder.Extract(model, structure.Graph);
                var nested = StructureRecognizer.Recognize(target);
                structure = nested.Structure ?? throw new StructureNotRecognizedException(modelPath, nested);
                note = $"{modelPath}: the blocks are in the decoder of {holder.Describe()}; probing that decoder as a model of its own (fed text, not searched)";
            }
            var pass = new ProbePass(structure, settings, label ?? modelPath);
            PassResult result;
            try
            {
                result = pass.Run(new PassContext(target));
            }
            catch (PassException ex) when (ex.InnerException is ArgumentException or NotSupportedException)
            {
                // A --probe tensor that is not in the graph or has no channel axis, a model opset too old for the reductions.
                throw new CalibrationException($"{modelPath}: {ex.InnerException.Message}");
            }
            return new ProbedModel(model, target, modelPath, structure, pass.Manifest!, result, note);
        }
        catch
        {
            model.Dispose();
            throw;
        }
    }

    public void Dispose()
    {
        if (!ReferenceEquals(Model, _loaded)) Model.Dispose();
        _loaded.Dispose();
    }
}

/// <summary>No transformer blocks: the caller prints the recognizer's message and exits with code 3.</summary>
public sealed class StructureNotRecognizedException(string path, RecognitionResult result)
    : Exception($"{path}: {result.Message}")
{
    public RecognitionResult Result { get; } = result;
}
